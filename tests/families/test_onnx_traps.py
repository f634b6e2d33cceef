"""The known traps of the recurrent ONNX operators, each avoided by the graphs we write and
each shown here to be caught by verify's own checks (verify.run_matrix for model.onnx,
verify_stream.stream_rows for the stream graph) if a graph fell into it:

  GRU     torch gates r, z, n vs ONNX z, r, h; torch's formula is linear_before_reset=1
  LSTM    torch gates i, f, g, o vs ONNX i, o, f, c
  relu    the RNN operator's activations: tract computes tanh anyway, the reference
          evaluator refuses 'Relu'
  sequence_lens  OpenVINO ignores it, tract refuses a non-constant one
  layout=1       onnxruntime refuses it, OpenVINO ignores it
  initial_h      omitted, tract cannot run a symbolic batch
"""
import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.export.normalize import normalize
from pipeline.export.onnx_graph import build_onnx
from pipeline.families import StreamReference, build_model, family, head_weights, layer_weights
from pipeline.families.graph import GraphBuilder, value_info
from pipeline.runtimes import load_runner, load_stream_runner
from pipeline.runtimes.pytorch import TorchRunner
from pipeline.specs import ModelSpec
from pipeline.verify import run_matrix
from pipeline.verify_stream import stream_rows

SHAPES = [(1, 1), (3, 9), (40, 12)]


def spec_for(cell, **kw):
    return ModelSpec(f"trap_{cell}", "regression", 5, 8, 2, cell=cell, **kw)


def eager(spec, seed=0):
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    return model, TorchRunner("torch", spec, "cpu", None, model)


def matrix(spec, reference, runtime, path):
    return run_matrix(spec, reference, [load_runner(runtime, spec, path)], SHAPES, seed=0)


def write(tmp_path, spec, model, name="model"):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(normalize(build_onnx(spec, model.state_dict()), spec).SerializeToString())
    return path


@pytest.mark.parametrize("cell,attr,wrong", [
    ("gru", "onnx_order", (0, 1, 2)),            # torch's r, z, n fed as ONNX's z, r, h
    ("gru", "native_attrs", lambda h: {"hidden_size": h}),   # linear_before_reset=0
    ("lstm", "onnx_order", (0, 1, 2, 3)),        # torch's i, f, g, o fed as ONNX's i, o, f, c
])
def test_gate_order_and_reset_mistakes_fail_verify(tmp_path, monkeypatch, cell, attr, wrong):
    spec = spec_for(cell)
    model, reference = eager(spec)
    assert all(r["passed"] for r in matrix(spec, reference, "onnx", write(tmp_path, spec, model)))
    monkeypatch.setattr(family(spec), attr, wrong)
    rows = matrix(spec, reference, "onnx", write(tmp_path, spec, model, "trap"))
    small = [r for r in rows if r["batch"] <= family(spec).native_batch_limit(8)]
    assert small and not any(r["passed"] for r in small)        # the operator's branch


def test_relu_through_the_rnn_operator_fails_in_tract_and_the_reference(tmp_path, monkeypatch):
    spec = spec_for("rnn_relu", num_layers=2)
    model, reference = eager(spec)
    ours = write(tmp_path, spec, model)
    fam = family(spec)
    monkeypatch.setattr(fam, "native_op", "RNN")
    monkeypatch.setattr(fam, "native_max_elements", 10 ** 6)
    monkeypatch.setattr(fam, "native_attrs", lambda h: {"hidden_size": h,
                                                        "activations": ["Relu"]})
    trap = write(tmp_path, spec, model, "trap")
    assert all(r["passed"] for r in matrix(spec, reference, "onnx", trap))   # ORT reads it
    tract = matrix(spec, reference, "tract", trap)
    assert not any(r["passed"] for r in tract if r["seq"] > 1)    # tanh computed, silently
    with pytest.raises(Exception, match="Relu"):
        load_runner("onnx-reference", spec, trap).run({"input": np.ones((1, 2, 5), np.float32)})
    for runtime in ("tract", "onnx-reference"):
        assert all(r["passed"] for r in matrix(spec, reference, runtime, ours))


def one_layer(spec, model, *, sequence_lens=False, layout=1, stateless=False):
    """A hand-built one-layer tanh RNN graph with one of the traps in it: the stream
    contract (input, lengths, h_in -> output, h_out), or `stateless` model.onnx's (input ->
    output) with no initial_h at all."""
    b = GraphBuilder()
    (w,), = layer_weights(spec, model.state_dict())
    x, lengths, h_in = (t.name for t in spec.stream_inputs)
    xs = x if layout == 1 else b.op("Transpose", [x], perm=[1, 0, 2])
    h0 = "" if stateless else b.op("Unsqueeze", [h_in, b.ints(1 if layout == 1 else 0)])
    _, yh = b.op("RNN", [xs, b.const(w.w_ih[None]), b.const(w.w_hh[None]),
                         b.const(np.concatenate([w.b_ih, w.b_hh])[None]),
                         b.op("Cast", [lengths], to=6) if sequence_lens else "", h0], 2,
                 hidden_size=spec.hidden_size, **({"layout": 1} if layout == 1 else {}))
    h = b.op("Reshape", [yh, b.ints(-1, spec.hidden_size)])
    fc_w, fc_b = head_weights(spec, model.state_dict())
    b.op("Gemm", [h, b.const(fc_w), b.const(fc_b)], [spec.output_name], transB=1)
    tensors = ((spec.input,), (spec.output,)) if stateless else \
        (spec.stream_inputs, spec.stream_outputs)
    if not stateless:
        b.op("Identity", [h], [spec.state_out_name])
    return b.model([value_info(t.name, list(t.shape), t.dtype) for t in tensors[0]],
                   [value_info(t.name, list(t.shape), t.dtype) for t in tensors[1]])


def stream_verdicts(spec, model, graph, runtime, tmp_path):
    """stream_rows' verdicts for `graph` in `runtime` (a load failure: an exception)."""
    import onnx
    path = tmp_path / f"{runtime}.onnx"
    onnx.save(graph, path)
    runner = load_stream_runner(runtime, spec, path)
    reference = TorchRunner("torch", spec, "cpu", None, StreamReference(model, spec),
                            tuple(t.name for t in spec.stream_inputs),
                            tuple(t.name for t in spec.stream_outputs))
    return stream_rows(spec, reference, [runner], [(3, 9)], chunkings=((4, 5),), batches=(2,))


def test_sequence_lens_is_ignored_by_openvino_and_refused_by_tract(tmp_path):
    spec = spec_for("rnn_tanh")
    model, _ = eager(spec)
    trap = one_layer(spec, model, sequence_lens=True, layout=0)
    ort_rows = stream_verdicts(spec, model, trap, "onnx", tmp_path)
    assert all(r["passed"] for r in ort_rows)                     # ORT honours it
    ragged = [r for r in stream_verdicts(spec, model, trap, "openvino", tmp_path)
              if r["check"] == "ragged"]
    assert ragged and not any(r["passed"] for r in ragged)        # padding read: wrong numbers
    with pytest.raises(Exception):
        rows = stream_verdicts(spec, model, trap, "tract", tmp_path)
        assert all(r["passed"] for r in rows)


def test_layout_1_is_refused_by_onnxruntime_and_ignored_by_openvino(tmp_path):
    spec = spec_for("rnn_tanh")
    model, _ = eager(spec)
    trap = one_layer(spec, model, layout=1)
    with pytest.raises(PipelineError, match="layout == 1"):   # verify stops at loading it
        stream_verdicts(spec, model, trap, "onnx", tmp_path)
    rows = stream_verdicts(spec, model, trap, "openvino", tmp_path)
    assert not any(r["passed"] for r in rows if r["batch"] > 1)


def test_tract_needs_an_explicit_initial_state(tmp_path):
    """Omitting initial_h (zeros by default) is valid ONNX and onnxruntime runs it; tract,
    given a symbolic batch, aborts the whole process while typing the graph (tract 0.23.9,
    measured), so it is run in a child process here: it never answers."""
    import subprocess
    import sys

    import onnx
    spec = spec_for("rnn_tanh")
    model, reference = eager(spec)
    path = tmp_path / "no_initial_h.onnx"
    onnx.save(one_layer(spec, model, layout=0, stateless=True), path)
    assert all(r["passed"] for r in matrix(spec, reference, "onnx", path))
    child = subprocess.run(
        [sys.executable, "-c", "import sys, numpy as np\n"
         "from pipeline.runtimes import load_runner\n"
         "from pipeline.specs import ModelSpec\n"
         f"spec = ModelSpec({spec.name!r}, 'regression', 5, 8, 2)\n"
         f"y = load_runner('tract', spec, {str(path)!r}).run("
         "{'input': np.ones((3, 4, 5), np.float32)})['output']\n"
         "print(y.tolist())"], capture_output=True, text=True, timeout=120)
    assert child.returncode != 0, child.stdout
