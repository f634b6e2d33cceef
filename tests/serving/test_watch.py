"""The watchdog, one round at a time (`Watchdog.check`): probes built from each model's config,
a killed stub healed and counted, a model that cannot come back (its file changed on disk, so
the pre-flight check refuses it) unloaded and reported while the others keep answering, and
SIGHUP's reload bringing it back once fixed. Answers against eager PyTorch."""
import os
import signal

import numpy as np
import pytest

from pipeline.runtimes import load_runner
from pipeline.serving import procs
from pipeline.serving.watch import Watchdog, probe_request
from pipeline.specs import SPECS
from tests.serving.conftest import start, stop_and_check
from tests.serving.test_faults import copy_registry

MODELS = ("forecaster_onnx", "forecaster_stream_onnx", "classifier_onnx")


@pytest.fixture(scope="module")
def watched(published, tmp_path_factory):
    registry = copy_registry(published, tmp_path_factory.mktemp("watched"), MODELS)
    server = start(registry)
    said = []
    yield server, Watchdog(server, tries=2, backoff=0.05, log=said.append), said, registry
    stop_and_check(server)


def kill(pid):
    """SIGKILL, and wait until the kernel has it dead (the signal is delivered asynchronously)."""
    import time

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def answer(server, published, model="classifier"):
    """(Triton's answer or its error, eager PyTorch's answer) for a fixed input."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    spec = SPECS[model]
    x = np.linspace(-1, 1, 3 * 4 * spec.input_size, dtype=np.float32).reshape(3, 4, spec.input_size)
    want = load_runner("torch", spec, published["out"] / model).run({spec.input_name: x})
    tensor = http.InferInput(spec.input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with http.InferenceServerClient(server.urls["http"]) as triton:
        try:
            got = triton.infer(f"{model}_onnx", [tensor]).as_numpy(spec.output_name)
        except InferenceServerException as exc:
            return str(exc), want[spec.output_name]
    return got, want[spec.output_name]


def test_probes_are_the_smallest_input_of_each_config(watched):
    server, watchdog, _, _ = watched
    spec = SPECS["forecaster"]
    stream = probe_request(server.model_config("forecaster_stream_onnx"))
    shapes = {t["name"]: (t["shape"], t["datatype"], t["data"][0]) for t in stream["inputs"]}
    assert shapes == {"input": ([1, 1, spec.input_size], "FP32", 0.0),
                      "lengths": ([1, 1], "INT64", 1),          # a valid length: 1 step
                      "h_in": ([1, spec.hidden_size], "FP32", 0.0)}
    assert [o["name"] for o in stream["outputs"]] == ["output", "h_out"]
    assert all(watchdog.probe(m) is None for m in MODELS)


def test_killed_stub_is_healed_then_a_model_that_cannot_come_back_is_given_up(watched, published):
    server, watchdog, said, registry = watched
    victim = procs.stubs(server.process.pid)["classifier_onnx"]
    kill(victim[0])
    assert watchdog.check() == ["classifier_onnx"]
    assert any(line.startswith("healed classifier_onnx (") for line in said), said   # stub or probe
    assert not any(procs.alive(p) for p in victim)     # the old instances' stubs are gone
    got, want = answer(server, published)
    np.testing.assert_allclose(got, want, **vars(SPECS["classifier"].tolerance("cpu")))
    assert 'rnn_pipeline_model_reloads_total{model="classifier_onnx"} 1' in watchdog.metrics()

    # the published file changes on disk, then its stub dies: the reload's pre-flight refuses
    # it, twice; it is unloaded and reported, and the other models keep answering
    model_file = registry / "classifier_onnx" / "1" / "model.onnx"
    kept = model_file.read_bytes()
    model_file.write_bytes(kept + b"\0")
    kill(procs.stubs(server.process.pid)["classifier_onnx"][0])
    assert watchdog.check() == []
    assert "classifier_onnx" in watchdog.given_up and "classifier_onnx" not in server.models
    assert any("gave up on classifier_onnx after 2 tries" in line and "model.onnx" in line
               for line in said), said
    assert 'rnn_pipeline_model_up{model="classifier_onnx"} 0' in watchdog.metrics()
    error, _ = answer(server, published)
    assert isinstance(error, str)                       # an error, not an answer
    got, want = answer(server, published, "forecaster")
    np.testing.assert_allclose(got, want, **vars(SPECS["forecaster"].tolerance("cpu")))
    assert watchdog.check() == []                       # nothing left to heal

    # fixed, and SIGHUP's reload: served again, watched again
    model_file.write_bytes(kept)
    server.reload()
    assert watchdog.check() == [] and watchdog.given_up == {}
    got, want = answer(server, published)
    np.testing.assert_allclose(got, want, **vars(SPECS["classifier"].tolerance("cpu")))
