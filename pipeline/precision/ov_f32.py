"""Recurrent layers kept in f32 inside an OpenVINO model compiled with the bf16 hint.

    model = f32_ir(onnx.load("model.onnx"), "model.xml")                  # every node f32
    model = f32_ir(onnx.load("model.onnx"), "mixed.xml", [1], "input")    # layer 2 f32
    runtime_precisions(compiled)     # [(kind, name, precision)] of the compiled recurrent ops

For a one-stack model (model.onnx's native branch, or its stream file with native=False).
bf16.choose_form writes the bf16 files in the cheapest form of `ladder` that is within the
default budget. OpenVINO's CPU plugin keeps a node in f32 under the bf16 hint where its
rt_info holds `precise_0` (ov::disable_fp16_compression), but that mark is not copied to the
nodes its own passes create, and the plugin rounds to bf16 every node between two
"significant" ones (RNNSeq, FullyConnected, MatMul...) unless it is marked. Marking every
node of the ONNX file's IR is therefore not f32 (gru_2: 1.17% of std, measured): the
Squeeze/Transposes between two layers and before each initial state become new Reshapes
(h rounded between the layers, and the carried state at every stream step), and the head's
MatMul + Add is fused into a new bf16 FullyConnected (h rounded before the head). So:

  layout ops       each layout-only chain the ONNX frontend writes before a recurrent op's X
                   (from layer 2 on) and initial states becomes one Reshape (rewire_layers),
                   which the plugin keeps as it is, with its mark;
  the head         Gemm(a, W, b) as ReduceSum(Unsqueeze(a, 2) * W^T, axis 1) + b, a
                   (batch, H, O) broadcast product: not a "significant" node, so it is in the
                   graph's tail, which the plugin keeps f32 (it walks back from the outputs to
                   the first significant node);
  marks            on every node (layers=None), or on the chosen layers' operators and their
                   input Reshapes, the input then split hi/lo for the layers left in bf16.

Measured (bench_cells' gru_2 and rnn_tanh_2, verify's data, bf16 hint): every node marked,
0.0002% of std, the stream file bit-identical to the f32 hint over 300 steps; the runtime
model shows each marked RNNSeq in f32 (docs/precision.md "f32 layers under the bf16 hint").
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


def rewire_layers(model, first_input: bool = False) -> int:
    """In OpenVINO's model, replace the layout ops the ONNX frontend puts before each
    recurrent op's X (from the second layer on: the previous layer's Y through Transpose-
    Squeeze-Transpose; with `first_input` the first layer's too, the model's input through
    the seq-major Transpose and the frontend's own, which the plugin folds into a new
    Reshape that it rounds: a seed stream file's x, every step) and its initial states (a Gather of h_in / c_in, Unsqueeze,
    Transpose) by one Reshape each, where those ops only reshape (`_reshape_only`): the
    plugin rewrites those ops into new nodes without the mark, and rounds them to bf16 (the
    state carried from step to step, the h between layers). Returns how many."""
    import openvino.opset13 as ops
    seqs = [op for op in model.get_ordered_ops() if op.get_type_name() in SEQUENCES]
    done = 0
    for i, seq in enumerate(seqs):
        ports = [0] if i or first_input else []
        ports += [1, 2] if seq.get_type_name() == "LSTMSequence" else [1]   # h0 (, c0)
        for port in ports:
            inp = seq.input(port)
            src = _reshape_only(inp)
            if src is None:
                continue
            dims = list(inp.get_partial_shape())
            if sum(d.is_dynamic for d in dims[1:]) > 1:
                continue                       # batch copied (0), one other inferred (-1)
            pattern = [0] + [-1 if d.is_dynamic else d.get_length() for d in dims[1:]]
            x = ops.reshape(src, ops.constant(np.array(pattern, np.int64)), True)
            x.set_friendly_name(f"{seq.get_friendly_name()}__in{port}")
            inp.get_source_output().replace(x.output(0))   # its other readers (ShapeOf) too
            done += 1
    model.validate_nodes_and_infer_types()
    return done


LAYOUT = ("Transpose", "Squeeze", "Unsqueeze")


def _reshape_only(inp):
    """The output that `inp` reads through layout ops (LAYOUT) which only insert, drop or
    move size-1 axes, batch staying first (each axis followed by label), or None."""
    src, chain = inp.get_source_output(), []
    while src.get_node().get_type_name() in LAYOUT:
        chain.append(src.get_node())
        src = src.get_node().input(0).get_source_output()
    if not chain:
        return None
    shape = src.get_partial_shape()
    labels = [None if d.is_static and d.get_length() == 1 else k for k, d in enumerate(shape)]
    for node in reversed(chain):                          # from the source to `inp`
        kind = node.get_type_name()
        arg = node.input(1).get_source_output().get_node() if node.get_input_size() > 1 \
            else None
        if kind != "Squeeze" and (arg is None or arg.get_type_name() != "Constant"):
            return None
        values = [int(v) for v in np.ravel(arg.get_data())] if arg is not None else []
        if kind == "Transpose":
            labels = [labels[p] for p in values]
        elif kind == "Squeeze":
            axes = {v % len(labels) for v in values} if values else \
                {k for k, lab in enumerate(labels) if lab is None}
            if any(labels[k] is not None for k in axes):
                return None                                   # a real axis dropped
            labels = [lab for k, lab in enumerate(labels) if k not in axes]
        else:                                                 # Unsqueeze
            rank = len(labels) + len(values)
            for v in sorted(v % rank for v in values):
                labels.insert(v, None)
    real = [lab for lab in labels if lab is not None]
    return src if real == sorted(real) and labels[0] == 0 else None


def f32_ir(onnx_model, xml_path: Path, layers=None, input_name: str | None = None,
           native: bool = True):
    """Write `onnx_model` (model.onnx's or model_stream.onnx's ModelProto; changed in place;
    `native`: model.onnx's native branch taken) as IR at xml_path (+ .bin) with the recurrent
    layers `layers` (indices; None: every node) kept f32 under the bf16 hint (module
    docstring); `input_name`: the input also split hi/lo (bf16_split, for a first layer left
    in bf16). Returns OpenVINO's model."""
    import tempfile

    import onnx
    import openvino as ov

    from .bf16 import native_branch
    from .bf16_split import SUFFIXES, split_products, state_from_last_step
    if native:
        native_branch(onnx_model.graph)
    if input_name:
        split_products(onnx_model, input_name, parts=("input",))   # + state_from_last_step
    else:
        state_from_last_step(onnx_model.graph)
    head_as_reduce(onnx_model.graph)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(onnx_model, str(src))
        model = ov.Core().read_model(str(src))
    rewire_layers(model, first_input=layers is None)    # a split input keeps its chain
    seqs = [op for op in model.get_ordered_ops() if op.get_type_name() in SEQUENCES]
    if layers is None:
        marked = [op for op in model.get_ordered_ops()
                  if op.get_type_name() not in ("Parameter", "Result", "Constant")]
    else:
        marked = [seqs[i] for i in layers]
        marked += [inp.get_source_output().get_node() for op in marked for inp in op.inputs()
                   if inp.get_source_output().get_node().get_friendly_name().startswith(
                       f"{op.get_friendly_name()}__in")]            # its input Reshapes
        marked += [op for op in model.get_ordered_ops()
                   if op.get_friendly_name().endswith(SUFFIXES)]     # the split's x_lo
    for op in marked:
        op.get_rt_info()[MARK] = ""
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return model


def layer_count(onnx_model) -> int:
    """How many native recurrent operators `onnx_model`'s graph and If branches hold."""
    from . import graphs
    return sum(n.op_type in ("LSTM", "GRU", "RNN") for g in graphs(onnx_model.graph)
               for n in g.node)


def ladder(layers: int) -> list[list[int] | None]:
    """The forms export tries, cheapest first (bf16.choose_form): the split file (no layer
    f32), then the last 1, 2, ... layers f32 with the input still split, then every node f32
    (None; no split: its f32 products need none)."""
    return [[]] + [list(range(layers - k, layers)) for k in range(1, layers)] + [None]


def verify_inputs(spec) -> list[dict]:
    """verify's budget data (verify.default_shapes at SCALES, + 256x50; tested equal)."""
    from .gate import verification_inputs
    shapes = [(b, s) for b in (1, 2, 64) for s in (1, spec.example_seq, 10 * spec.example_seq)]
    return verification_inputs(spec, shapes, (1.0, 10.0))


def runtime_precisions(compiled) -> list[tuple[str, str, str]]:
    """(layer type, name, runtime precision) of each recurrent op OpenVINO compiled."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str) if "layerType" in rt else ""
        if kind in ("RNNSeq", "RNNCell"):
            rows.append((kind, op.get_friendly_name(), rt["runtimePrecision"].astype(str)))
    return rows
