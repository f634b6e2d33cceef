"""Done-when of issue 17: users' own nn.LSTM (2 layers), nn.GRU, 2-layer ReLU nn.RNN,
bidirectional nn.GRU and an nn.LSTMCell loop, saved as state dicts under attribute names
the pipeline never saw, go through import, export and verify; then every artifact, in all
five runtimes, equals the user's own forward at shapes no other test uses (model.onnx and
model.pt on whole sequences; the stream artifacts on ragged rows from zero state, and on a
sequence fed in chunks with the state carried)."""
import numpy as np
import pytest
import torch

from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.contract import check_stream_feeds
from pipeline.runtimes import ARTIFACTS, STREAM_ARTIFACTS, artifact, load_runner, \
    load_stream_runner
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify

from .user_models import USERS, user_model

RUNTIMES = ("torchscript", "onnx", "openvino", "tract", "onnx-reference")
SHAPES = ((2, 13), (7, 3), (33, 6))        # batch x seq: no export example, no verify shape


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{name: spec}: each user model imported (checked against its --module), exported and
    verified (every runtime for the 2-layer LSTM, the default pair for the others)."""
    out = tmp_path_factory.mktemp("users")
    specs = {}
    for name, (factory, task, (cell, *_)) in USERS.items():
        path = out / f"{name}_state.pt"
        torch.save(user_model(name).state_dict(), path)
        spec = import_model(ImportConfig(
            name, path, task, "relu" if cell == "rnn_relu" else None,
            f"tests.importing.user_models:{factory.__name__}", out))["spec"]
        export(ExportConfig(name, out), log=lambda s: None)
        report = verify(VerifyConfig(name, out, "cpu", shapes=((1, 1), (5, 21)),
                                     runtimes=("all",) if name == "churn" else
                                     ("torchscript", "onnx")), log=lambda s: None)
        assert report["passed"]
        specs[name] = spec
    return out, specs


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", USERS)
def test_artifacts_compute_the_users_forward(imported, name, runtime):
    out, specs = imported
    spec, theirs = specs[name], user_model(name)
    runner = load_runner(runtime, spec, out / name / artifact(runtime))
    rng = np.random.default_rng(11)
    for batch, seq in SHAPES:
        x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
        with torch.inference_mode():
            want = theirs(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(runner.run({"input": x})["output"], want, atol=2e-5,
                                   rtol=2e-5, err_msg=f"{runtime} at {batch}x{seq}")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", [n for n in USERS if n != "bigru"])
def test_stream_artifacts_compute_the_users_forward(imported, name, runtime):
    out, specs = imported
    spec, theirs = specs[name], user_model(name)
    runner = load_stream_runner(runtime, spec, out / name / artifact(runtime, stream=True))
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 17, spec.input_size)).astype(np.float32)
    lengths = np.array([17, 1, 9, 4, 16])
    padded = x.copy()
    for i, n in enumerate(lengths):
        padded[i, n:] = 1e3                                    # garbage past each length
    got = runner.run(check_stream_feeds({"input": padded, "lengths": lengths}, spec,
                                        "ragged"))["output"]             # zero state: a new stream
    with torch.inference_mode():
        for i, n in enumerate(lengths):                        # each row alone, unpadded
            want = theirs(torch.from_numpy(x[i:i + 1, :n])).numpy()
            np.testing.assert_allclose(got[i:i + 1], want, atol=2e-5, rtol=2e-5,
                                       err_msg=f"{runtime} row {i} ({n} steps)")
    states, start = {}, 0
    for n in (1, 6, 10):                                       # the whole x, in chunks
        result = runner.run(check_stream_feeds({"input": x[:, start:start + n], **states,
                                                "lengths": np.full(5, n, np.int64)}, spec, "chunk"))
        states = {i: result[o] for i, o in spec.state_names}
        start += n
    with torch.inference_mode():
        want = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result["output"], want, atol=2e-5, rtol=2e-5,
                               err_msg=f"{runtime} chunked 1+6+10")


def test_a_bidirectional_model_gets_no_stream_artifacts(imported):
    out, specs = imported
    files = sorted(p.name for p in (out / "bigru").iterdir())
    assert set(ARTIFACTS.values()) <= set(files)
    assert not set(STREAM_ARTIFACTS.values()) & set(files)
