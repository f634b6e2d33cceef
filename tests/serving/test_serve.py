"""tritonserver on a published repository, over HTTP and gRPC: health, metadata against the
spec, answers against eager PyTorch, Triton's own refusals of bad requests, and reload."""
import re

import numpy as np
import pytest

from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish_main
from pipeline.runtimes import load_runner
from pipeline.specs import MODEL_NAMES, SPECS
from tests.publishing.test_publish import rebuild

PROTOCOLS = ("http", "grpc")
RUNTIMES = ("onnx", "torchscript")
SHAPES = [(1, 1), (1, 7), (3, 25), (64, 40)]   # (batch, seq); 64: the largest Triton batch
STREAM_INPUTS = ("input", "lengths", "h_in")    # an RNN's stream model, either backend


def client(server, protocol):
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module, module.InferenceServerClient(server.urls[protocol])


def names(model, runtime):
    """The names a client uses: the contract's, whichever backend serves it."""
    spec = SPECS[model]
    return spec.input_name, spec.output_name


def infer(module, triton, model_name, input_name, x, output_name, datatype="FP32"):
    tensor = module.InferInput(input_name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return triton.infer(model_name, [tensor], outputs=[module.InferRequestedOutput(output_name)])


def metadata(triton, protocol, name):
    meta = triton.get_model_metadata(name)
    if protocol == "grpc":
        from google.protobuf.json_format import MessageToDict
        meta = MessageToDict(meta, preserving_proto_field_name=True)
    return meta


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_metadata_match_the_spec(server, protocol):
    module, triton = client(server, protocol)
    with triton:
        assert triton.is_server_live() and triton.is_server_ready()
        for model in MODEL_NAMES:
            spec = SPECS[model]
            for runtime in RUNTIMES:
                name = f"{model}_{runtime}"
                assert triton.is_model_ready(name)
                meta = metadata(triton, protocol, name)
                in_name, out_name = names(model, runtime)
                # Triton reports the batch axis as -1 in front of the dims: the spec's shape.
                want = [(in_name, "FP32", [-1, -1, spec.input_size])], \
                       [(out_name, "FP32", [-1, spec.output_size])]
                got = tuple([(t["name"], t["datatype"], [int(d) for d in t["shape"]])
                             for t in meta[kind]] for kind in ("inputs", "outputs"))
                assert got == want, name


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_answers_equal_eager_pytorch(server, published, protocol, model):
    spec = SPECS[model]
    eager = load_runner("torch", spec, published["out"] / model)
    tol = spec.tolerance("cpu")
    module, triton = client(server, protocol)
    rng = np.random.default_rng(12)
    with triton:
        for batch, seq in SHAPES:
            x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
            want = eager.run({spec.input_name: x})[spec.output_name]
            for runtime in RUNTIMES:
                in_name, out_name = names(model, runtime)
                got = infer(module, triton, f"{model}_{runtime}", in_name, x, out_name).as_numpy(out_name)
                assert got.shape == want.shape and got.dtype == np.float32
                np.testing.assert_allclose(got, want, atol=tol.atol, rtol=tol.rtol,
                                           err_msg=f"{runtime} at {batch}x{seq}")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_requests_get_tritons_error_and_the_server_stays_healthy(server, protocol):
    from tritonclient.utils import InferenceServerException

    module, triton = client(server, protocol)
    spec = SPECS["classifier"]
    good = np.zeros((2, 5, spec.input_size), np.float32)
    bad = {   # what Triton says, in part, for each
        "feature size": (np.zeros((2, 5, spec.input_size + 1), np.float32), "input", "FP32",
                         "unexpected shape"),
        "dtype": (good.astype(np.float64), "input", "FP64", "data-type"),
        "input name": (good, "inputs", "FP32", "unexpected inference input 'inputs'"),
        "batch over max_batch_size": (np.zeros((65, 5, spec.input_size), np.float32), "input", "FP32",
                                      "batch-size must be <= 64"),
    }
    with triton:
        for what, (x, name, datatype, message) in bad.items():
            with pytest.raises(InferenceServerException, match=message):
                infer(module, triton, "classifier_onnx", name, x, "output", datatype)
        assert triton.is_server_live() and triton.is_server_ready()
        assert infer(module, triton, "classifier_onnx", "input", good, "output").as_numpy("output").shape == (2, 2)


def test_reload_serves_a_newly_published_version(server, published, tmp_path):
    import shutil
    import tritonclient.http as module
    out = tmp_path / "out"
    shutil.copytree(published["out"] / "forecaster", out / "forecaster")
    rebuild(out, "forecaster", note="version 2")      # another build, verified again
    assert publish_main(PublishConfig("forecaster", out, published["registry"],
                                      signing_key=published["keys"]["private"]),
                        log=lambda s: None)["version"] == 2
    models = server.reload()
    assert models["forecaster_onnx"] == [1, 2]
    x = np.ones((1, 3, 10), np.float32)
    with module.InferenceServerClient(server.urls["http"]) as triton:
        for runtime in RUNTIMES:
            assert triton.get_model_metadata(f"forecaster_{runtime}")["versions"] == ["2"]
            in_name, out_name = names("forecaster", runtime)
            answer = infer(module, triton, f"forecaster_{runtime}", in_name, x, out_name)
            assert answer.get_response()["model_version"] == "2"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_stream_models_equal_the_eager_stream_reference(server, published, protocol, model):
    """`<model>_stream_*` (issue 13): ragged rows padded with garbage, lengths, carried state;
    both outputs equal the eager reference (row by row, unpadded) within the spec tolerance."""
    from pipeline.runtimes import load_stream_runner

    spec = SPECS[model]
    reference = load_stream_runner("torch", spec, published["out"] / model)
    tol = spec.tolerance("cpu")
    module, triton = client(server, protocol)
    rng = np.random.default_rng(5)
    batch, seq = 4, 9
    x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
    lengths = np.array([9, 1, 5, 3], np.int64)
    h = rng.standard_normal((batch, spec.hidden_size)).astype(np.float32)
    feeds = {spec.input_name: x, spec.lengths_name: lengths, spec.state_in_name: h}
    want = reference.run(feeds)
    with triton:
        for runtime in ("stream_onnx", "stream_torchscript"):    # one request for both
            tensors = []
            for name, value in feeds.items():
                value = value[:, None] if value.ndim == 1 else value   # lengths: dims [1]
                tensors.append(module.InferInput(name, list(value.shape), "INT64" if value.dtype == np.int64
                                                 else "FP32"))
                tensors[-1].set_data_from_numpy(value)
            outs = [t.name for t in spec.stream_outputs]
            wires = outs
            result = triton.infer(f"{model}_{runtime}", tensors,
                                  outputs=[module.InferRequestedOutput(w) for w in wires])
            for name, wire in zip(outs, wires):
                np.testing.assert_allclose(result.as_numpy(wire), want[name], atol=tol.atol,
                                           rtol=tol.rtol, err_msg=f"{runtime} {name}")


def test_a_model_that_raises_answers_with_its_error(server):
    """A stream TorchScript module refuses length 0 (issue 13): the backend answers that
    request with the module's error, and the model keeps serving."""
    import tritonclient.http as module
    from tritonclient.utils import InferenceServerException

    spec = SPECS["classifier"]
    feeds = [np.zeros((1, 3, spec.input_size), np.float32), np.array([[0]], np.int64),
             np.zeros((1, spec.hidden_size), np.float32)]

    def call(triton, lengths):
        tensors = []
        for i, value in enumerate([feeds[0], lengths, feeds[2]]):
            tensors.append(module.InferInput(STREAM_INPUTS[i], list(value.shape),
                                             "INT64" if value.dtype == np.int64 else "FP32"))
            tensors[-1].set_data_from_numpy(value)
        return triton.infer("classifier_stream_torchscript", tensors)

    with module.InferenceServerClient(server.urls["http"]) as triton:
        with pytest.raises(InferenceServerException, match="classifier_stream_torchscript: "):
            call(triton, feeds[1])
        assert call(triton, np.array([[3]], np.int64)).as_numpy("output").shape == (1, 2)


def test_repository_api_is_closed_to_clients(server):
    """Loading is `serve`'s alone, after its checks: a client's load request is refused."""
    import tritonclient.http as module
    from tritonclient.utils import InferenceServerException

    with module.InferenceServerClient(server.urls["http"]) as triton:
        with pytest.raises(InferenceServerException, match="restricted|denied|not allowed|unauth"):
            triton.load_model("forecaster_onnx")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loadtest_reports_and_checks_answers(server, published, protocol, tmp_path):
    import json

    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, [
        "loadtest", "--registry", str(published["registry"]), "--url", server.urls[protocol],
        "--protocol", protocol, "--model-name", "classifier_torchscript", "--concurrency", "1,4",
        "--duration", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert (tmp_path / "loadtest.png").read_bytes()[:4] == b"\x89PNG"
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4]
    assert all(lv["answers"] > 0 and lv["errors"] == 0 and lv["wrong"] == 0 for lv in report["levels"])
    assert report["errors"] == report["wrong"] == 0
    assert "p99 ms" in result.output


def test_loadtest_in_a_log_writes_plain_progress_lines(server, published, tmp_path):
    """stderr to a file, as under CI or nohup: one plain line per level (every 5 s and at
    its end), no progress bar's carriage returns."""
    import subprocess
    import sys

    log = tmp_path / "loadtest.log"
    with open(log, "w") as sink:
        done = subprocess.run([sys.executable, "-m", "pipeline", "loadtest", "--registry",
                               str(published["registry"]), "--url", server.urls["grpc"],
                               "--concurrency", "1,2", "--duration", "1", "--out", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=sink, text=True, timeout=120)
    text = log.read_text()
    assert done.returncode == 0, done.stdout + text
    assert "\r" not in text and "\x1b" not in text, repr(text[:300])
    for level in (1, 2):
        assert re.search(rf"^loadtest grpc x{level}: 1/1 s, [1-9]\d* answers, 0 errors$", text, re.M), text


def test_loadtest_fails_on_errors(published, tmp_path):
    """Nothing listens at --url: every request fails, and so does the run, in one line."""
    import socket

    from click.testing import CliRunner

    from pipeline.cli import cli
    from tests.test_cli import one_line_error

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(cli, [
        "loadtest", "--registry", str(published["registry"]), "--url", f"127.0.0.1:{port}",
        "--concurrency", "1", "--duration", "0.5", "--out", str(tmp_path)])
    one_line_error(result, "errors, 0 wrong answers; first error:")


def test_success_counter_grows_by_the_answers(server):
    """Triton's Prometheus endpoint (what docs/serving.md says to alert on): after N answered
    requests a model's success counter has grown by exactly N. A request the model itself
    refuses (a stream TorchScript model given length 0) is answered with its error, which
    Triton 2.51 counts under *success*, not failure (docs/serving.md warns of it; a dead
    stub's errors do count as failures, reason BACKEND)."""
    import re
    import urllib.request

    import tritonclient.http as module
    from tritonclient.utils import InferenceServerException

    def counter(metric, model, reason=None):
        text = urllib.request.urlopen(server.urls["metrics"], timeout=10).read().decode()
        labels = f'model="{model}",' + (f'reason="{reason}",' if reason else "") + 'version="1"'
        found = re.findall(rf"^{metric}{{{labels}}} (\S+)$", text, re.M)
        assert len(found) == 1, (metric, labels)
        return float(found[0])

    spec = SPECS["classifier"]
    in_name, out_name = names("classifier", "torchscript")
    before = counter("nv_inference_request_success", "classifier_torchscript")
    refused = counter("nv_inference_request_success", "classifier_stream_torchscript")
    failed = counter("nv_inference_request_failure", "classifier_stream_torchscript", "BACKEND")
    with module.InferenceServerClient(server.urls["http"]) as triton:
        for i in range(25):
            x = np.full((1, 1 + i % 4, spec.input_size), i / 10, np.float32)
            infer(module, triton, "classifier_torchscript", in_name, x, out_name)
        for _ in range(3):
            tensors = []
            for i, value in enumerate([np.zeros((1, 3, spec.input_size), np.float32),
                                       np.array([[0]], np.int64),
                                       np.zeros((1, spec.hidden_size), np.float32)]):
                tensors.append(module.InferInput(STREAM_INPUTS[i], list(value.shape),
                                                 "INT64" if i == 1 else "FP32"))
                tensors[-1].set_data_from_numpy(value)
            with pytest.raises(InferenceServerException):
                triton.infer("classifier_stream_torchscript", tensors)
    assert counter("nv_inference_request_success", "classifier_torchscript") - before == 25
    assert counter("nv_inference_request_success", "classifier_stream_torchscript") - refused == 3
    assert counter("nv_inference_request_failure", "classifier_stream_torchscript",
                   "BACKEND") - failed == 0


def test_stream_clients_carry_state_like_eager_stepping(server, published):
    """The stream load test's client (loadstream.py): its recorded answers equal eager
    PyTorch stepped with carried state, and the whole-sequence check it runs accepts them and
    catches a client that did not feed the state back."""
    import time

    from pipeline.runtimes import load_stream_runner
    from pipeline.serving.loadstream import check_streams, stream_worker
    from pipeline.serving.loadtest import LoadConfig
    from pipeline.serving.published import open_published

    spec = SPECS["classifier"]
    model = open_published(published["registry"], "classifier_stream_onnx")
    config = LoadConfig(server.urls["grpc"], published["registry"], "classifier_stream_onnx",
                        batch=2, steps=12)
    streams, outcomes = [], []
    stream_worker(0, config, model, None, time.perf_counter() + 0.5,
                  lambda *a: outcomes.append(a[1]), streams)
    assert streams and not any(outcomes) and len(outcomes) == sum(len(a) for _, a in streams)
    eager = load_stream_runner("torch", spec, published["out"] / "classifier")
    tol = spec.tolerance("cpu")
    unfed = []
    for xs, answers in streams:
        h = np.zeros((2, spec.hidden_size), np.float32)
        forgot = []
        for x, got in zip(xs, answers):
            want = eager.run({"input": x, "lengths": np.ones(2, np.int64), "h_in": h})
            for name in ("output", "h_out"):
                np.testing.assert_allclose(got[name], want[name], atol=tol.atol, rtol=tol.rtol)
            h = want["h_out"]
            forgot.append(eager.run({"input": x, "lengths": np.ones(2, np.int64),
                                     "h_in": np.zeros_like(h)}))
        unfed.append((xs, forgot))
    assert check_streams(model, streams) == 0
    assert check_streams(model, unfed) >= sum(len(a) for _, a in unfed) - len(unfed)


def test_stream_loadtest_on_its_own_server(published, tmp_path):
    """`loadtest --model-name <model>_stream_onnx` without --url: its own tritonserver, N
    clients each with their own streams, 0 errors and 0 wrong answers, the server's RSS
    sampled; the report and plot written."""
    import json

    from click.testing import CliRunner

    from pipeline.cli import cli
    from tests.serving.test_faults import copy_registry

    registry = copy_registry(published, tmp_path, ("forecaster_stream_onnx",))
    result = CliRunner().invoke(cli, [
        "loadtest", "--registry", str(registry), "--model-name", "forecaster_stream_onnx",
        "--concurrency", "1,4", "--duration", "1", "--steps", "16", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert report["stream"] and report["steps"] == 16 and report["seq"] == 1
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4]
    assert all(lv["answers"] > 16 and lv["errors"] == lv["wrong"] == 0 for lv in report["levels"])
    assert report["rss"]["samples"] and report["rss"]["at_end_bytes"] > 0
    assert (tmp_path / "loadtest.png").read_bytes()[:4] == b"\x89PNG"
    assert "one step per request, streams of 16 steps" in result.output
