"""Every family x form x 1-3 layers x directions: model.onnx and model_stream.onnx written by
pipeline/export/onnx_graph.py against the torch module itself, in every ONNX runtime.

The reference is torch's own nn.RNN/GRU/LSTM (and the cells in a loop) with random
weights: for model.onnx the module's forward, for the stream graph each row run alone on
its own unpadded steps from its given state (torch's layers again, not our code). Shapes
cross each graph's If (batch 1, 3, 300 against limits of batch 6-256 at H = 16) and the
stream rows are ragged, with garbage past their lengths, or all full (the LSTM's operator
branch)."""
import itertools

import numpy as np
import pytest
import torch

from pipeline.export.normalize import normalize
from pipeline.export.onnx_graph import build_onnx, build_stream_onnx
from pipeline.families import build_model
from pipeline.runtimes import CROSS_RUNTIMES, installed, load_runner
from pipeline.specs import ModelSpec

COMBOS = [(cell, form, layers, bi) for cell, form, layers, bi in itertools.product(
    ("rnn_tanh", "rnn_relu", "gru", "lstm"), ("stack", "cell_loop"), (1, 2, 3), (False, True))
    if form == "stack" or (layers == 1 and not bi)]
SHAPES = ((1, 1), (3, 29), (300, 4))
RUNTIMES = ("onnx", *CROSS_RUNTIMES)
F, H, O = 5, 16, 3


def combo_id(c):
    return f"{c[0]}-{c[1]}-{c[2]}{'-bi' if c[3] else ''}"


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """{combo: (spec, torch model, model.onnx path, model_stream.onnx path or None)}."""
    folder, result = tmp_path_factory.mktemp("graphs"), {}
    for combo in COMBOS:
        cell, form, layers, bi = combo
        spec = ModelSpec(combo_id(combo).replace("-", "_"), "regression", F, H, O, cell=cell,
                         form=form, num_layers=layers, bidirectional=bi)
        torch.manual_seed(len(result))
        model = build_model(spec).eval()
        paths = []
        for build in (build_onnx, build_stream_onnx if spec.has_stream else None):
            if build is None:
                paths.append(None)
                continue
            path = folder / f"{spec.name}_{build.__name__}.onnx"
            path.write_bytes(normalize(build(spec, model.state_dict()), spec).SerializeToString())
            paths.append(path)
        result[combo] = (spec, model, *paths)
    return result


def stream_reference(model, spec, x, lengths, states):
    """torch's own layers, each row alone on its first lengths[i] steps from its state."""
    rnn = model.rnn if spec.form == "stack" else model.rnn_cell
    head = model.fc if spec.form == "stack" else model.linear
    outs, finals = [], [[] for _ in states]
    for i, n in enumerate(lengths):
        row = torch.from_numpy(x[i:i + 1, :n])
        hx = [torch.from_numpy(s[i:i + 1]).reshape(1, spec.num_layers, H).transpose(0, 1)
              .contiguous() for s in states]                       # (layers, 1, H)
        if spec.form == "stack":
            _, last = rnn(row, tuple(hx) if len(hx) > 1 else hx[0])
            last = last if isinstance(last, tuple) else (last,)
        else:
            last = tuple(h[0] for h in hx)
            for t in range(n):
                step = rnn(row[:, t], last if len(last) > 1 else last[0])
                last = step if isinstance(step, tuple) else (step,)
            last = tuple(h.unsqueeze(0) for h in last)
        outs.append(head(last[0][-1]))
        for k, s in enumerate(last):
            finals[k].append(s.transpose(0, 1).reshape(1, *states[k].shape[1:]))
    return [torch.cat(outs).numpy(), *(torch.cat(f).numpy() for f in finals)]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_model_onnx_equals_the_torch_module(graphs, combo, runtime):
    if not installed(runtime):
        pytest.fail(f"{runtime} is not installed: pip install '.[runtimes]'")
    spec, model, path, _ = graphs[combo]
    runner = load_runner(runtime, spec, path)
    rng = np.random.default_rng(1)
    for batch, seq in SHAPES:
        x = rng.standard_normal((batch, seq, F)).astype(np.float32)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = runner.run({"input": x})["output"]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5,
                                   err_msg=f"{runtime} at batch {batch}, seq {seq}")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("combo", [c for c in COMBOS if not c[3]], ids=combo_id)
def test_stream_onnx_equals_each_row_alone(graphs, combo, runtime):
    spec, model, _, path = graphs[combo]
    runner = load_runner(runtime, spec, path)
    runner.inputs = [t.name for t in spec.stream_inputs]
    runner.outputs = [t.name for t in spec.stream_outputs]
    rng = np.random.default_rng(2)
    for (batch, seq), full in itertools.product(SHAPES, (False, True)):
        x = rng.standard_normal((batch, seq, F)).astype(np.float32)
        lengths = np.full(batch, seq) if full else rng.integers(1, seq + 1, batch)
        for i, n in enumerate(lengths):
            x[i, n:] = 1e3                                        # garbage past each length
        states = [np.tanh(rng.standard_normal((batch, *spec.state[1:]))).astype(np.float32)
                  for _ in spec.state_names]
        feeds = dict(zip(runner.inputs, [x, lengths.astype(np.int64), *states]))
        got = runner.run(feeds)
        with torch.inference_mode():
            want = stream_reference(model, spec, x, lengths, states)
        for name, w in zip(runner.outputs, want):
            np.testing.assert_allclose(got[name], w, atol=1e-5, rtol=1e-5, err_msg=(
                f"{runtime} {name} at batch {batch}, seq {seq}, {'full' if full else 'ragged'}"))


def test_bidirectional_models_have_no_stream_form(graphs, tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.runtimes import load_stream_runner
    bidirectional = [graphs[c] for c in COMBOS if c[3]]
    assert bidirectional and all(g[3] is None and not g[0].has_stream for g in bidirectional)
    with pytest.raises(PipelineError, match="bidirectional: it has no stream artifact"):
        load_stream_runner("onnx", bidirectional[0][0], tmp_path / "model_stream.onnx")
