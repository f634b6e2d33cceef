"""Chains of layers served (issue 22): the POS tagger (int64 token ids, per-step
log-probabilities, LSTM h and c), the packed classifier (features and `lengths`), the packed
per-step tagger (pad_packed_sequence: ids and `lengths`, per-step answers) and three LSTM
layers (6 stream states), and their stream twins, from one server start. Answers over HTTP
and gRPC equal the users' own modules (tests/importing/chain_models.py, packed_models.py);
`loadtest` drives each with feeds drawn from the release's spec; ids outside the vocabulary
and float ids are refused, not answered."""
import numpy as np
import pytest
import torch

from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish
from pipeline.serving.loadtest import LoadConfig
from pipeline.serving.loadtest import main as loadtest
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify
from tests.importing.chain_models import CHAINS, chain_model
from tests.importing.packed_models import PACKED, packed_model

from .conftest import start, stop_and_check
from .test_imported import ask
from .test_serve import PROTOCOLS, client

MODELS = ("tagger", "padded", "ptagger", "lstm3")


def source(name):
    """(class, task, the module that holds it, the user's seeded module)."""
    if name in CHAINS:
        return (*CHAINS[name][:2], "chain_models", chain_model(name))
    return (*PACKED[name][:2], "packed_models", packed_model(name))
RUNTIMES = ("onnx", "torchscript")


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    out = tmp_path_factory.mktemp("chains-serve")
    specs = {}
    for name in MODELS:
        cls, task, where, theirs = source(name)
        torch.save(theirs.state_dict(), out / f"{name}.pt")
        specs[name] = import_model(ImportConfig(
            name, out / f"{name}.pt", task, module=f"tests.importing.{where}:{cls.__name__}",
            out=out), log=lambda s: None)["spec"]
        export(ExportConfig(name, out), log=lambda s: None)
        verify(VerifyConfig(name, out, "cpu", shapes=((1, 1), (3, 9))), log=lambda s: None)
        publish(PublishConfig(name, out, out / "registry", unsigned=True), log=lambda s: None)
    server = start(out / "registry")
    yield {"out": out, "specs": specs, "server": server}
    stop_and_check(server)


def users(name, x, lengths=None):
    with torch.inference_mode():
        args = (torch.from_numpy(x),) + (() if lengths is None else (torch.from_numpy(lengths),))
        return source(name)[3](*args).numpy()


def zeros(spec, batch):
    return {t.name: np.zeros((batch, *t.shape[1:]), np.float32) for t in spec.stream_inputs[2:]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_chains_equal_the_users_modules(chains, protocol):
    """Tagger: (4, 11) ids -> (4, 11, 5) per step, stateless and stream (all states in chain
    order, from zeros). Packed: ragged lengths, each row from its own valid steps; its stream
    model, each row's last valid answer."""
    specs, rng = chains["specs"], np.random.default_rng(5)
    ids = rng.integers(0, specs["tagger"].input_size, (4, 11)).astype(np.int64)
    x = rng.standard_normal((4, 8, specs["padded"].input_size)).astype(np.float32)
    lengths = np.array([8, 1, 5, 3], np.int64)
    tagged, classified = users("tagger", ids), users("padded", x, lengths)
    assert specs["tagger"].input_size == chain_model("tagger").word_embeddings.num_embeddings
    module, triton = client(chains["server"], protocol)
    with triton:
        for runtime in RUNTIMES:
            got = ask(module, triton, "tagger", runtime, {"input": ids}, ["output"])["output"]
            np.testing.assert_allclose(got, tagged, atol=2e-5, rtol=2e-5, err_msg=runtime)
            got = ask(module, triton, "padded", runtime, {"input": x, "lengths": lengths},
                      ["output"])["output"]
            np.testing.assert_allclose(got, classified, atol=2e-5, rtol=2e-5, err_msg=runtime)
            stream = f"stream_{runtime}"
            outputs = [t.name for t in specs["tagger"].stream_outputs]
            assert outputs == ["output", "h_out", "c_out"]
            feeds = {"input": ids, "lengths": np.full(4, 11, np.int64), **zeros(specs["tagger"], 4)}
            got = ask(module, triton, "tagger", stream, feeds, outputs)["output"]
            np.testing.assert_allclose(got, tagged, atol=2e-5, rtol=2e-5, err_msg=stream)
            feeds = {"input": x, "lengths": lengths, **zeros(specs["padded"], 4)}
            got = ask(module, triton, "padded", stream, feeds, ["output"])["output"]
            np.testing.assert_allclose(got, classified, atol=2e-5, rtol=2e-5, err_msg=stream)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_packed_tagger_equals_the_users_module(chains, protocol):
    """Packed per-step tagger, (4, 11) ids at lengths 11, 3, 7, 1: every step of the
    stateless answer (zeros past each length through the head, as pad_packed_sequence
    gives); the stream's answer at each row's valid steps, and its h_out the GRU's h_n."""
    spec, rng = chains["specs"]["ptagger"], np.random.default_rng(6)
    ids = rng.integers(0, spec.input_size, (4, 11)).astype(np.int64)
    lengths = np.array([11, 3, 7, 1], np.int64)
    want = users("ptagger", ids, lengths)
    theirs = packed_model("ptagger")
    with torch.inference_mode():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            theirs.tok(torch.from_numpy(ids)), torch.from_numpy(lengths), batch_first=True,
            enforce_sorted=False)
        h_n = theirs.encoder(packed)[1][0].numpy()                     # (batch, hidden)
    module, triton = client(chains["server"], protocol)
    with triton:
        for runtime in RUNTIMES:
            got = ask(module, triton, "ptagger", runtime, {"input": ids, "lengths": lengths},
                      ["output"])["output"]
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5, err_msg=runtime)
            stream = f"stream_{runtime}"
            feeds = {"input": ids, "lengths": lengths, **zeros(spec, 4)}
            got = ask(module, triton, "ptagger", stream, feeds, ["output", "h_out"])
            for i, n in enumerate(lengths):
                np.testing.assert_allclose(got["output"][i, :n], want[i, :n], atol=2e-5,
                                           rtol=2e-5, err_msg=f"{stream} row {i}")
            np.testing.assert_allclose(got["h_out"], h_n, atol=2e-5, rtol=2e-5, err_msg=stream)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_six_state_stream_equals_the_users_module(chains, protocol):
    """Three LSTM layers: the stateless answer, and the stream's in two chunks (4 + 5 steps)
    with all 6 states returned and sent back, equal the user's forward over all 9 steps."""
    spec = chains["specs"]["lstm3"]
    x = np.random.default_rng(7).standard_normal((3, 9, spec.input_size)).astype(np.float32)
    want = users("lstm3", x)
    outputs = [t.name for t in spec.stream_outputs]
    assert len(outputs) == 7 and len(spec.stream_inputs) == 8
    module, triton = client(chains["server"], protocol)
    with triton:
        for runtime in RUNTIMES:
            got = ask(module, triton, "lstm3", runtime, {"input": x}, ["output"])["output"]
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5, err_msg=runtime)
            states, steps = zeros(spec, 3), []
            for chunk in (x[:, :4], x[:, 4:]):
                feeds = {"input": np.ascontiguousarray(chunk),
                         "lengths": np.full(3, chunk.shape[1], np.int64), **states}
                got = ask(module, triton, "lstm3", f"stream_{runtime}", feeds, outputs)
                states = {i: got[o] for i, o in spec.state_names}
                steps.append(got["output"])
            np.testing.assert_allclose(np.concatenate(steps, axis=1), want, atol=2e-5,
                                       rtol=2e-5, err_msg=f"stream_{runtime} 4 + 5 steps")


@pytest.mark.parametrize("model", ["tagger_onnx", "tagger_stream_torchscript", "padded_torchscript",
                                   "padded_stream_onnx", "ptagger_onnx",
                                   "ptagger_stream_torchscript", "lstm3_stream_onnx",
                                   "lstm3_torchscript"])
def test_loadtest_drives_chains_without_errors(chains, model):
    """Token ids inside the vocabulary and lengths 1..seq drawn from the release's spec; every
    answer checked (a stream's per-step outputs at each row's valid step)."""
    server, protocol = chains["server"], "grpc" if "stream" in model else "http"
    report = loadtest(LoadConfig(server.urls[protocol], chains["out"] / "registry", model,
                                 protocol, (2,), 0.5, batch=3, seq=6, steps=5, progress=False),
                      log=lambda s: None)
    level = report["levels"][0]
    assert level["answers"] > 0 and (report["errors"], report["wrong"]) == (0, 0), level


@pytest.mark.parametrize("runtime", RUNTIMES + ("stream_onnx",))
@pytest.mark.parametrize("ids, needle", [
    (np.array([[1, 2, 50]]), ""), (np.array([[1, -1, 3]]), "negative value"),
    (np.array([[1.0, 2.0]], np.float32), "")])
def test_ids_outside_the_vocabulary_or_float_are_refused(chains, runtime, ids, needle):
    """An id past the table fails in the runtime; -1 (which ONNX's Gather would read from the
    table's end) is refused by the backend; float ids by Triton (the config says INT64)."""
    import tritonclient.http as module
    from tritonclient.utils import InferenceServerException
    feeds = {"input": ids}
    if runtime.startswith("stream_"):
        feeds.update({"lengths": np.full(1, ids.shape[1], np.int64),
                      **zeros(chains["specs"]["tagger"], 1)})
    triton = module.InferenceServerClient(chains["server"].urls["http"])
    with triton, pytest.raises(InferenceServerException) as refused:
        ask(module, triton, "tagger", runtime, feeds, ["output"])
    assert needle in str(refused.value)
