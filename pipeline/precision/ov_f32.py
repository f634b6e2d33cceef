"""Recurrent layers kept in f32 inside an OpenVINO model compiled with the bf16 hint.

    model = f32_ir(onnx.load("model.onnx"), "model_f32.xml")           # every layer f32
    model = f32_ir(onnx.load("model.onnx"), "mixed.xml", layers=[0])    # layer 1 only
    runtime_precisions(compiled)     # [(kind, name, precision)] of the compiled recurrent ops

For a one-stack model (model.onnx's native branch). Measurement tool for issue 23, not wired
into export (docs/precision.md "f32 layers under the bf16 hint"). OpenVINO's CPU plugin keeps
a node in f32 under the bf16 hint where its rt_info holds `precise_0`
(ov::disable_fp16_compression), but that mark is not copied to the nodes its own passes
create, and the plugin rounds to bf16 every node between two "significant" ones (RNNSeq,
FullyConnected, MatMul...) unless it is marked. Marking every node of the ONNX file's IR is
therefore not f32 (gru_2: 1.17% of std, measured): the Squeeze/Transposes between two layers
become new Reshapes (h rounded between the layers), and the head's MatMul + Add is fused into
a new bf16 FullyConnected (h rounded before the head). So this module writes:

  between layers   one marked Reshape Y (batch, 1, seq, H) -> X (batch, seq, H), which the
                   plugin keeps as it is, in place of the ONNX frontend's Transpose-Squeeze-
                   Transpose;
  the head         Gemm(a, W, b) as ReduceSum(Unsqueeze(a, 2) * W^T, axis 1) + b, a
                   (batch, H, O) broadcast product: not a "significant" node, so it is in the
                   graph's tail, which the plugin keeps f32 (it walks back from the outputs to
                   the first significant node);
  marks            on every node (layers=None), or on the chosen layers' operators and their
                   input Reshapes only (mixed precision per layer).

Measured (bench_cells' gru_2, verify's data, bf16 hint): every node marked, 0.0002% of std
(f32 to rounding); the runtime model shows each RNNSeq in f32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MARK = "precise_0"              # ov::disable_fp16_compression's rt_info key (keeps f32)
SEQUENCES = ("LSTMSequence", "GRUSequence", "RNNSequence")


def head_as_reduce(g) -> int:
    """Rewrite each top-level Gemm with a constant B (not transA) of `g` in place as
    ReduceSum(Unsqueeze(A, 2) * B', axis 1) [+ C], B' = B as (1, K, N); returns how many."""
    from onnx import helper, numpy_helper
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], 0
    for n in g.node:
        attrs = {a.name: a.i for a in n.attribute if a.type == a.INT}
        if n.op_type != "Gemm" or n.input[1] not in inits or attrs.get("transA"):
            nodes.append(n)
            continue
        b = numpy_helper.to_array(inits[n.input[1]])               # (N, K) if transB else (K, N)
        b = (b.T if attrs.get("transB") else b) * attrs.get("alpha", 1.0)
        a, p = n.input[0], f"{n.name or n.output[0]}__reduce"
        g.initializer.extend([numpy_helper.from_array(b[None].astype(np.float32), f"{p}_w"),
                              numpy_helper.from_array(np.array([2], np.int64), f"{p}_ax2"),
                              numpy_helper.from_array(np.array([1], np.int64), f"{p}_ax1")])
        bias = len(n.input) > 2 and n.input[2]
        summed = f"{p}_sum" if bias else n.output[0]
        nodes += [helper.make_node("Unsqueeze", [a, f"{p}_ax2"], [f"{p}_a"], name=f"{p}_a"),
                  helper.make_node("Mul", [f"{p}_a", f"{p}_w"], [f"{p}_m"], name=f"{p}_m"),
                  helper.make_node("ReduceSum", [f"{p}_m", f"{p}_ax1"], [summed], keepdims=0,
                                   name=f"{p}_sum")]                # (batch, K, N) -> (batch, N)
        if bias:
            c = numpy_helper.to_array(inits[n.input[2]]) * next(
                (x.f for x in n.attribute if x.name == "beta"), 1.0)
            g.initializer.append(numpy_helper.from_array(c.astype(np.float32), f"{p}_c"))
            nodes.append(helper.make_node("Add", [summed, f"{p}_c"], [n.output[0]],
                                          name=f"{p}_bias"))
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    return done


def rewire_layers(model) -> int:
    """In OpenVINO's model, each recurrent op fed by the previous one's Y through the ONNX
    frontend's Transpose-Squeeze-Transpose reads Y through one Reshape instead (every reader
    of the old X, e.g. the ShapeOf of the initial state, too); returns how many."""
    import openvino.opset13 as ops
    seqs = [op for op in model.get_ordered_ops() if op.get_type_name() in SEQUENCES]
    done = 0
    for prev, nxt in zip(seqs, seqs[1:]):
        y = prev.output(0)                                         # (batch, 1, seq, H)
        if y.get_partial_shape()[1].get_length() != 1:
            continue                                               # bidirectional: left alone
        hidden = y.get_partial_shape()[3].get_length()
        x = ops.reshape(y, ops.constant(np.array([0, -1, hidden], np.int64)), True)
        x.set_friendly_name(f"{nxt.get_friendly_name()}__x")      # (batch, seq, H)
        nxt.input(0).get_source_output().replace(x.output(0))
        done += 1
    model.validate_nodes_and_infer_types()
    return done


def f32_ir(onnx_model, xml_path: Path, layers=None):
    """Write the native branch of `onnx_model` (model.onnx's ModelProto; changed in place) as
    IR at xml_path (+ .bin) with the recurrent layers `layers` (indices; None: every node)
    kept f32 under the bf16 hint (module docstring); returns OpenVINO's model."""
    import tempfile

    import onnx
    import openvino as ov

    from .bf16 import native_branch
    from .bf16_split import state_from_last_step
    native_branch(onnx_model.graph)
    state_from_last_step(onnx_model.graph)
    head_as_reduce(onnx_model.graph)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(onnx_model, str(src))
        model = ov.Core().read_model(str(src))
    rewire_layers(model)
    seqs = [op for op in model.get_ordered_ops() if op.get_type_name() in SEQUENCES]
    if layers is None:
        marked = [op for op in model.get_ordered_ops()
                  if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    else:
        marked = [seqs[i] for i in layers]
        marked += [op.input(0).get_source_output().get_node() for op in marked
                   if op.input(0).get_source_output().get_node().get_friendly_name()
                   .endswith("__x")]                                 # its input Reshape
    for op in marked:
        op.get_rt_info()[MARK] = ""
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return model


def runtime_precisions(compiled) -> list[tuple[str, str, str]]:
    """(layer type, name, runtime precision) of each recurrent op OpenVINO compiled."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str) if "layerType" in rt else ""
        if kind in ("RNNSeq", "RNNCell"):
            rows.append((kind, op.get_friendly_name(), rt["runtimePrecision"].astype(str)))
    return rows
