"""verify's stream checks: they pass the real artifacts with measured errors, and they catch
the known ways a runtime gets a stream graph wrong (lengths ignored, state ignored, a
length-0 row zeroed), whatever the runtime, since they only call runner.run."""
import json
import shutil

import numpy as np
import pytest

from pipeline.errors import InputError, VerificationError
from pipeline.contract import check_stream_feeds
from pipeline.runtimes import Runner, open_stream_runners
from pipeline.specs import MODEL_NAMES
from pipeline.verify import VerifyConfig, main
from pipeline.verify_stream import ragged_feeds, stream_rows


@pytest.fixture(scope="module")
def stream(exported):
    """{model: (eager stream reference, [torchscript, onnx] stream runners)}."""
    result = {}
    for name in MODEL_NAMES:
        reference, *runners = open_stream_runners(exported["out"] / name,
                                                  ("torch", "torchscript", "onnx"))
        result[name] = reference, runners
    return result


class Faulty(Runner):
    """The reference with one known runtime fault injected (impl: the reference runner)."""

    def run(self, feeds):
        feeds = dict(feeds)
        x, lengths, h_in = (feeds[n] for n in self.inputs)
        if self.provider == "ignores lengths":        # OpenVINO with sequence_lens
            feeds[self.inputs[1]] = np.full_like(lengths, x.shape[1])
        if self.provider == "ignores state":           # initial_h dropped
            feeds[self.inputs[2]] = np.zeros_like(h_in)
        return self.impl.run(feeds)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_real_stream_artifacts_pass_with_measured_errors(stream, name):
    reference, runners = stream[name]
    rows = stream_rows(reference.spec, reference, runners, [(1, 1), (3, 40)])
    assert all(r["passed"] for r in rows), [r["reason"] for r in rows if not r["passed"]]
    assert {r["runtime"] for r in rows} == {"stream_torchscript", "stream_onnx"}
    checks = {r["check"] for r in rows}
    assert checks == {"ragged", "chunked 1+7+50+242", "chunked 299+1", "chunked 300x1"}
    for r in rows:    # figures, not only a verdict
        assert 0 <= r["max_abs"] < 1e-3 and {"max_abs_output", "max_abs_h_out"} <= set(r)


@pytest.mark.parametrize("fault,check", [("ignores lengths", "ragged"),
                                         ("ignores state", "chunked")])
def test_known_runtime_faults_fail_their_check(stream, fault, check):
    reference, _ = stream["forecaster"]
    faulty = Faulty("onnx", reference.spec, fault, impl=reference,
                    inputs=reference.inputs, outputs=reference.outputs)
    rows = stream_rows(reference.spec, reference, [faulty], [(4, 30)], batches=(1,))
    failed = {r["check"].split()[0] for r in rows if not r["passed"]}
    assert check in failed
    assert all("|error|" in r["reason"] for r in rows if not r["passed"])


def test_feeds_pass_the_stream_input_policy(stream):
    spec = stream["classifier"][0].spec
    feeds = ragged_feeds(spec, np.random.default_rng(0), 3, 10)
    assert feeds["lengths"].tolist()[:2] == [10, 1]
    assert np.abs(feeds["input"][1, 1:]).max() > 10       # garbage padding, not zeros
    with pytest.raises(InputError, match="out of range"):
        check_stream_feeds({**feeds, "lengths": np.array([10, 0, 3])}, spec, "feeds")


def test_verify_reports_stream_rows_and_fails_on_a_broken_stream_graph(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from pipeline.manifest import MANIFEST, file_entry
    shutil.copytree(exported["out"] / "classifier", tmp_path / "classifier")
    folder = tmp_path / "classifier"
    report = main(VerifyConfig("classifier", tmp_path, "cpu", shapes=((2, 9),)), log=lambda s: None)
    stream_checks = [r for r in report["rows"] if r["runtime"].startswith("stream_")]
    assert {r["check"] for r in stream_checks} >= {"ragged", "chunked 300x1"}
    assert report["passed"] and "model_stream.onnx" in report["artifacts"]
    # the head's weights off by 1e-3 in the stream graph only: its rows must fail
    model = onnx.load(str(folder / "model_stream.onnx"))
    for i, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 1:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array + 1e-3, init.name))
    onnx.save(model, str(folder / "model_stream.onnx"))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model_stream.onnx"] = file_entry(folder / "model_stream.onnx")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(VerificationError, match="first: stream_onnx") as info:
        main(VerifyConfig("classifier", tmp_path, "cpu", shapes=((2, 9),)), log=lambda s: None)
    rows = info.value.report["rows"]
    assert all(r["passed"] for r in rows if not r["runtime"].startswith("stream_onnx"))
