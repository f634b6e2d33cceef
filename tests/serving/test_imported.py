"""Users' own models served (issue 17): a 2-layer nn.LSTM and a bidirectional nn.GRU, from
their state dicts through import, export, verify and a signed publish, answer over HTTP and
gRPC what the users' own modules compute; the LSTM's stream models carry (h, c) of shape
(batch, layers, H); the bidirectional model is served without stream models."""
import numpy as np
import pytest
import torch

from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish
from pipeline.runtimes import load_stream_runner
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify
from tests.importing.user_models import USERS, user_model

from .conftest import start, stop_and_check
from .test_serve import PROTOCOLS, client

MODELS = ("churn", "bigru")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from pipeline.publishing.signing import keygen

    out = tmp_path_factory.mktemp("imported-serve")
    keys, specs = keygen(out / "keys"), {}
    for name in MODELS:
        factory, task, _ = USERS[name]
        torch.save(user_model(name).state_dict(), out / f"{name}.pt")
        specs[name] = import_model(ImportConfig(name, out / f"{name}.pt", task,
                                                module=f"tests.importing.user_models:"
                                                       f"{factory.__name__}", out=out))["spec"]
        export(ExportConfig(name, out), log=lambda s: None)
        verify(VerifyConfig(name, out, "cpu", shapes=((1, 1), (3, 12))), log=lambda s: None)
        publish(PublishConfig(name, out, out / "registry", signing_key=keys["private"]),
                log=lambda s: None)
    server = start(out / "registry", public_key=keys["public"])
    yield {"out": out, "specs": specs, "server": server}
    stop_and_check(server)


def ask(module, triton, model, runtime, feeds: dict, outputs: list[str]):
    """One request; the contract's tensor names, whichever backend serves `runtime`."""
    tensors = []
    for name, value in feeds.items():
        value = value[:, None] if value.ndim == 1 else value        # lengths: dims [1]
        tensors.append(module.InferInput(name, list(value.shape),
                                         "INT64" if value.dtype == np.int64 else "FP32"))
        tensors[-1].set_data_from_numpy(value)
    result = triton.infer(f"{model}_{runtime}", tensors,
                          outputs=[module.InferRequestedOutput(n) for n in outputs])
    return {name: result.as_numpy(name) for name in outputs}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", MODELS)
def test_served_answers_equal_the_users_module(imported, protocol, model):
    spec, theirs = imported["specs"][model], user_model(model)
    module, triton = client(imported["server"], protocol)
    x = np.random.default_rng(3).standard_normal((5, 23, spec.input_size)).astype(np.float32)
    with torch.inference_mode():
        want = theirs(torch.from_numpy(x)).numpy()
    with triton:
        for runtime in ("onnx", "torchscript"):
            got = ask(module, triton, model, runtime, {"input": x}, ["output"])["output"]
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5, err_msg=runtime)
        for runtime in ("stream_onnx", "stream_torchscript"):   # bidirectional: none
            assert triton.is_model_ready(f"{model}_{runtime}") == spec.has_stream
    published = sorted(p.name for p in (imported["out"] / "registry").iterdir()
                       if p.name.startswith(model))
    assert len(published) == (4 if spec.has_stream else 2), published


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_lstm_stream_carries_h_and_c(imported, protocol):
    """Ragged rows from a random (h, c) of shape (batch, 2, 64) equal the eager stream
    reference; from zeros, each row equals the user's module on that row alone."""
    spec = imported["specs"]["churn"]
    reference = load_stream_runner("torch", spec, imported["out"] / "churn")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 9, spec.input_size)).astype(np.float32)
    lengths = np.array([9, 1, 5, 3], np.int64)
    h, c = (np.tanh(rng.standard_normal((4, 2, 64))).astype(np.float32) for _ in range(2))
    feeds = {"input": x, "lengths": lengths, "h_in": h, "c_in": c}
    outputs = [t.name for t in spec.stream_outputs]
    assert outputs == ["output", "h_out", "c_out"]
    want = reference.run(feeds)
    zeros = {**feeds, "h_in": np.zeros_like(h), "c_in": np.zeros_like(c)}
    module, triton = client(imported["server"], protocol)
    with triton:
        for runtime in ("stream_onnx", "stream_torchscript"):
            got = ask(module, triton, "churn", runtime, feeds, outputs)
            for name in outputs:
                np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-5,
                                           err_msg=f"{runtime} {name}")
            fresh = ask(module, triton, "churn", runtime, zeros, ["output"])["output"]
            with torch.inference_mode():
                for i, n in enumerate(lengths):
                    row = user_model("churn")(torch.from_numpy(x[i:i + 1, :n])).numpy()
                    np.testing.assert_allclose(fresh[i:i + 1], row, atol=2e-5, rtol=2e-5)
