"""The stream artifacts (model_stream.onnx on ONNX Runtime, model_stream.pt) against the seed
classes: chunked == whole with carried state, ragged == per sequence, zeros == model.onnx."""
import numpy as np
import onnx
import pytest
import torch

from pipeline.compare import compare
from pipeline.errors import InputError
from pipeline.families import family
from pipeline.contract import check_stream_feeds
from pipeline.runtimes import load_runner, load_stream_runner
from pipeline.specs import MODEL_NAMES

from ..seeds import seed_model

RUNTIMES = {"onnx": "model_stream.onnx", "torchscript": "model_stream.pt"}
CHUNKINGS = [(1, 7, 50, 242), (299, 1), (1,) * 300]
GARBAGE = 1e3


@pytest.fixture(scope="module")
def models(exported):
    """{name: (spec, seed-class model with the trained weights, {runtime: stream runner})}."""
    from safetensors.torch import load_file

    from pipeline.checkpoint import read_config
    result = {}
    for name in MODEL_NAMES:
        folder = exported["out"] / name
        spec = read_config(folder)["recipe"].model
        seed = seed_model(spec).eval()
        seed.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
        runners = {r: load_stream_runner(r, spec, folder / f) for r, f in RUNTIMES.items()}
        result[name] = (spec, seed, runners)
    return result


def seed_run(seed, spec, x):
    """(output, final hidden state) of the seed class on the whole of x (batch, seq, F)."""
    t = torch.from_numpy(x)
    with torch.inference_mode():
        if spec.form == "stack":
            h = seed.rnn(t)[1][0]                               # h_n: (1, batch, H) -> (batch, H)
        else:
            h = torch.zeros(t.size(0), spec.hidden_size)
            for step in t.unbind(1):
                h = seed.rnn_cell(step, h)
        return seed(t).numpy(), h.numpy()


def assert_close(spec, actual, expected, what):
    tol = spec.tolerance("cpu")
    for got, want, tensor in zip(actual, expected, ("output", "h_out")):
        c = compare(got, want, tol, spec.task == "classification" and tensor == "output")
        assert c.passed, f"{what} {tensor}: {c.reason} (max abs {c.max_abs:.3g})"


def feeds(spec, x, lengths, h_in=None):
    h_in = np.zeros((len(x), spec.hidden_size), np.float32) if h_in is None else h_in
    return {spec.input_name: x, spec.lengths_name: np.asarray(lengths, np.int64),
            spec.state_in_name: h_in}


def batches(spec):
    limit = family(spec).native_batch_limit(spec.hidden_size)
    return [1, limit, limit + 1]     # each side of the graphs' If


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=["1+7+50+242", "299+1", "300x1"])
@pytest.mark.parametrize("batch_index", [0, 1, 2])
def test_chunked_equals_whole(models, name, runtime, chunks, batch_index):
    spec, seed, runners = models[name]
    batch = batches(spec)[batch_index]
    x = np.random.default_rng(batch).standard_normal((batch, 300, spec.input_size)
                                                     ).astype(np.float32)
    h, start = np.zeros((batch, spec.hidden_size), np.float32), 0
    for n in chunks:                  # carry h_out into h_in, as a streaming client does
        out = runners[runtime].run(feeds(spec, x[:, start:start + n], [n] * batch, h))
        h, start = out[spec.state_out_name], start + n
    assert_close(spec, (out[spec.output_name], h), seed_run(seed, spec, x),
                 f"{runtime} batch {batch} chunks {len(chunks)}")


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("padded", [50, 80])
def test_ragged_equals_each_sequence_alone(models, name, runtime, padded):
    spec, seed, runners = models[name]
    lengths = [1, 7, 50, 13]
    rng = np.random.default_rng(padded)
    x = rng.standard_normal((4, padded, spec.input_size)).astype(np.float32)
    for i, n in enumerate(lengths):   # garbage, not zeros, past each length
        x[i, n:] = GARBAGE * rng.standard_normal((padded - n, spec.input_size))
    out = runners[runtime].run(feeds(spec, x, lengths))
    for i, n in enumerate(lengths):
        want = seed_run(seed, spec, np.ascontiguousarray(x[i:i + 1, :n]))
        got = out[spec.output_name][i:i + 1], out[spec.state_out_name][i:i + 1]
        assert_close(spec, got, want, f"{runtime} row {i} (length {n} of {padded})")


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_zero_state_full_lengths_reproduce_model_onnx(exported, models, name, runtime):
    spec, _, runners = models[name]
    plain = load_runner("onnx", spec, exported["out"] / name / "model.onnx")
    for batch, seq in [(1, 1), (3, 20), (64, 70)]:
        x = np.random.default_rng(seq).standard_normal((batch, seq, spec.input_size)
                                                       ).astype(np.float32)
        got = runners[runtime].run(feeds(spec, x, [seq] * batch))[spec.output_name]
        want = plain.run({spec.input_name: x})[spec.output_name]
        c = compare(got, want, spec.tolerance("cpu"), spec.task == "classification")
        assert c.passed, f"{runtime} ({batch}, {seq}): {c.reason}"


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stream_graph_signature_and_portable_form(exported, models, name):
    spec = models[name][0]
    model = onnx.load(str(exported["out"] / name / "model_stream.onnx"))
    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert [(v.name, dims(v)) for v in graph.input] == [
        ("input", ["batch", "seq", spec.input_size]), ("lengths", ["batch"]),
        ("h_in", ["batch", spec.hidden_size])]
    assert [(v.name, dims(v)) for v in graph.output] == [
        ("output", ["batch", spec.output_size]), ("h_out", ["batch", spec.hidden_size])]
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    ops = [n.op_type for n in graph.node]
    assert "If" not in ops and "GatherElements" in ops
    (rnn,) = [n for n in graph.node if n.op_type == "RNN"]
    assert rnn.input[4] == "" and rnn.input[5] != ""   # no sequence_lens; initial_h given


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torchscript_refuses_bad_lengths_itself(models, name):
    spec, _, runners = models[name]
    x = np.zeros((2, 5, spec.input_size), np.float32)
    for lengths in ([0, 5], [6, 1], [-1, 2], [5]):
        with pytest.raises(Exception, match="length"):
            runners["torchscript"].run(feeds(spec, x, lengths))


def test_stream_input_policy_refuses_bad_feeds(models):
    spec = models["classifier"][0]
    x = np.zeros((2, 5, spec.input_size), np.float32)
    h = np.zeros((2, spec.hidden_size), np.float32)
    cases = [
        (feeds(spec, x, [0, 5]), "lengths[0] = 0 is out of range; every length must be in 1..5"),
        (feeds(spec, x, [3, 6]), "lengths[1] = 6 is out of range"),
        (feeds(spec, x, [-2, 1]), "lengths[0] = -2 is out of range"),
        (feeds(spec, x, [5]), "one integer length per input row: shape (2,)"),
        (feeds(spec, x, [5.0, 5.0]) | {"lengths": np.array([5.0, 5.0])}, "float64"),
        (feeds(spec, x, [5, 5], h[:1]), "h_in has shape (1, 8); the model takes (2, 8)"),
        (feeds(spec, x, [5, 5], h[:, :3]), "h_in has shape (2, 3)"),
        (feeds(spec, x[:, :0], [1, 1]), "batch and seq must be >= 1"),
        ({"input": x}, "needs arrays 'input' and 'lengths'"),
    ]
    for bad, needle in cases:
        with pytest.raises(InputError) as info:
            check_stream_feeds(bad, spec, "feeds")
        assert needle in str(info.value), (needle, str(info.value))
    ok = check_stream_feeds({"input": x, "lengths": np.array([5, 1], np.int32)}, spec, "feeds")
    assert ok["lengths"].dtype == np.int64 and not ok["h_in"].any()   # zeros start a stream


def test_config_written_before_the_stream_fields_still_loads():
    from pipeline.specs import SPECS, model_spec_from_dict, to_dict
    old = {k: v for k, v in to_dict(SPECS["forecaster"]).items()
           if k not in ("lengths_name", "state_in_name", "state_out_name")}
    spec = model_spec_from_dict(old)
    assert [t.name for t in spec.stream_inputs] == ["input", "lengths", "h_in"]
    assert [(t.name, t.shape) for t in spec.stream_outputs] == [
        ("output", ("batch", 1)), ("h_out", ("batch", 20))]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ragged_continuation_from_carried_state(models, name, runtime):
    """A shared 20-step prefix, then ragged rows continuing from its h_out: row i equals the
    seed on its prefix and its own first lengths[i] steps, one unpadded sequence."""
    spec, seed, runners = models[name]
    lengths = [1, 7, 50, 13]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 70, spec.input_size)).astype(np.float32)
    first = runners[runtime].run(feeds(spec, x[:, :20], [20] * 4))
    rest = x[:, 20:].copy()
    for i, n in enumerate(lengths):
        rest[i, n:] = GARBAGE * rng.standard_normal((50 - n, spec.input_size))
    out = runners[runtime].run(feeds(spec, rest, lengths, first[spec.state_out_name]))
    for i, n in enumerate(lengths):
        want = seed_run(seed, spec, np.ascontiguousarray(x[i:i + 1, :20 + n]))
        got = out[spec.output_name][i:i + 1], out[spec.state_out_name][i:i + 1]
        assert_close(spec, got, want, f"{runtime} row {i} (20 + {n} steps)")
