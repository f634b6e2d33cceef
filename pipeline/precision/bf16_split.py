"""bf16's exact input products: the hi/lo split that keeps bf16 inside the budget.

    model = split_products(onnx_model, input_name)   # onnx.ModelProto, rewritten in place
    save_ir(onnx_path, xml_path)                     # OpenVINO IR, the split's f32 nodes marked

OpenVINO's CPU plugin with the bf16 hint rounds every float tensor that enters a matrix
product to bfloat16 (8 bits of mantissa), accumulating in float32; the LSTM's cell state
stays float32. On a 2-layer LSTM (H=64, F=16; docs/precision.md "bf16 inside the default
budget") the rounding of the input x and of the input weights W is the largest part of the
error on verify's data (x10 inputs included), then the recurrent product (h, R: 0.7%).

The split writes a product with a constant operand as two bf16 products that sum to the
float32 one (W = W_hi + W_lo, W_hi = bf16(W), W_lo = W - W_hi, both exact in bf16 to 2^-17):

  "input"   first recurrent layer  X' = [x_hi, x_lo, x] (batch, seq, 3F),
                                   W' = [W_hi, W_hi, W_lo]: x W up to x_lo W_lo (2^-18)
  "deeper"  deeper layers          X' = [h, h], W' = [W_hi, W_lo] (h is bf16 already)
  "weights" every layer as "deeper", x not split (plain ONNX would do; for measurement)
  "head"    the head (Gemm)        A' = [a, a], B' = [B_hi; B_lo]

The bf16 file splits "input" and "head" (PARTS): measured the best error per time (deeper
layers' W: 0.89% -> 0.56% of std for lstm_2 but +0.8 ms of 6.3 at (64,200)). The native
operator still runs in bf16 on AMX, its recurrent product unchanged. x_lo = x + (-1 * x_hi)
must be computed in float32, and the plugin keeps a node f32 in bf16 mode only where its
rt_info says so (`precise_0`, ov::disable_fp16_compression, which IR stores as
`DisablePrecisionConversion`). ONNX cannot carry rt_info, so the bf16 file is an IR
(model_bf16.xml + model_bf16.bin). In f32 the split computes the same function (tested
against the user's module).

The split also has the last layer's final state read as Y's last step (state_from_last_step),
the same values, so that OpenVINO runs the operator in its own seq-major order: no reorder
of X or Y, and of the split input's two Transposes only one runs. Same run, min of blocks
(docs/precision.md): lstm_1 at (64,200) 5112 -> 3905 µs (1.00x -> 1.31x eager).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import graphs

NATIVE = ("LSTM", "GRU", "RNN")
MARK = "precise_0"              # ov::disable_fp16_compression's rt_info key (keeps f32)
SUFFIXES = ("__bf16hi_c", "__bf16hi", "__bf16neg", "__bf16lo")   # the f32 nodes' outputs


def bf16_round(a: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 (round to nearest even), as float32."""
    a = np.ascontiguousarray(a, np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def _hi_lo(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hi = bf16_round(w)
    return hi, (w.astype(np.float32) - hi).astype(np.float32)


PARTS = ("input", "head")       # measured: the best error per time (module docstring)


def split_products(model, input_name: str, parts=PARTS):
    """Rewrite `model` (onnx.ModelProto) in place: every native recurrent operator's input
    product and every top-level Gemm head split into hi/lo bf16 products (module docstring);
    `parts`: which of them (module docstring; others for measurement). Returns the model;
    ValueError where nothing was split."""
    from onnx import TensorProto, helper, numpy_helper
    g = model.graph
    inits = _initializers(g)
    pre = input_name                            # the input split, at the top level
    hi, neg, lo, split = (f"{pre}{s}" for s in ("__bf16hi", "__bf16neg", "__bf16lo",
                                                  "__bf16cat"))
    # x_lo = x + (-1 * x_hi), exact in f32 (nodes kept f32), then [x_hi, x_lo, x]
    top = [helper.make_node("Cast", [pre], [f"{pre}__bf16hi_c"], to=TensorProto.BFLOAT16,
                            name=f"{pre}__bf16hi_c"),
           helper.make_node("Cast", [f"{pre}__bf16hi_c"], [hi], to=TensorProto.FLOAT,
                            name=hi),
           helper.make_node("Mul", [hi, f"{pre}__bf16minus1"], [neg], name=neg),
           helper.make_node("Add", [pre, neg], [lo], name=lo),
           helper.make_node("Concat", [hi, lo, pre], [split], axis=-1, name=split)]
    used: list = []                             # the first layers that read the split
    count = _split_graph(g, inits, input_name, split, True, set(parts), used)
    if not count:
        raise ValueError("no native recurrent operator or Gemm to split")
    if used:
        g.initializer.append(numpy_helper.from_array(np.array(-1, np.float32),
                                                     f"{pre}__bf16minus1"))
    nodes = (top if used else []) + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    state_from_last_step(g)
    return model


def state_from_last_step(g) -> int:
    """Where a forward, seq-major native operator over full-length rows (no sequence_lens)
    has its output Y unread and its final state Y_h read, read Y's last step instead: the
    same values. OpenVINO's CPU plugin runs a *Sequence op in its own seq-major order only
    where a Transpose feeds X and Y's one reader is a Transpose (its OptimizeSequence-
    Transposes pass; the ONNX frontend writes that one for Y when Y is read); otherwise it
    reorders X to seq-major and Y back, the unread Y included (lstm_1 bf16 at (64,200),
    OpenVINO's PERF_COUNT: 0.1 ms for X, 0.5 ms for Y, of 4.2 ms). `g`: a top-level graph;
    returns how many operators were rewritten."""
    from onnx import helper, numpy_helper
    read = ({i for n in g.node for i in n.input} | {o.name for o in g.output}) - {""}
    nodes, done = [], 0
    for node in g.node:
        nodes.append(node)
        attrs = {a.name: a for a in node.attribute}
        forward = attrs["direction"].s == b"forward" if "direction" in attrs else True
        seq_major = attrs["layout"].i == 0 if "layout" in attrs else True
        outs = list(node.output) + [""] * (2 - len(node.output))
        if (node.op_type not in NATIVE or not forward or not seq_major or outs[0] in read
                or outs[1] not in read or (len(node.input) > 4 and node.input[4])):
            continue
        y, last = f"{outs[1]}__Y", f"{outs[1]}__last"
        node.output[0], node.output[1] = y, ""
        g.initializer.append(numpy_helper.from_array(np.array(-1, np.int64), last))
        # Y (seq, directions=1, batch, H) -> its last step (1, batch, H), Y_h's shape
        nodes.append(helper.make_node("Gather", [y, last], [outs[1]], axis=0,
                                      name=f"{outs[1]}__laststep"))
        done += 1
    del g.node[:]
    g.node.extend(nodes)
    return done


def _split_graph(g, inits: dict, input_name: str, split: str, top: bool, parts: set,
                 used: list) -> int:
    """Split the native operators of `g` and its If branches (not Scan bodies: their
    products are the recurrent ones, left in bf16); the Gemm heads where `top`."""
    from onnx import helper, numpy_helper
    made = {n.output[0]: n for n in g.node}
    nodes, count = [], 0
    for node in g.node:
        for a in node.attribute:
            if a.type == a.GRAPH and node.op_type == "If":
                count += _split_graph(a.g, inits, input_name, split, False, parts, used)
        src = made.get(node.input[0])
        first = src is not None and src.op_type == "Transpose" and src.input[0] == input_name
        if first and "weights" in parts:
            first = False                     # x not split: the first layer as a deeper one
        wanted = "input" if first else ("deeper" if "weights" not in parts else "weights")
        if node.op_type in NATIVE and node.input[1] in inits and wanted in parts:
            x, w = node.input[0], numpy_helper.to_array(inits[node.input[1]])   # (D, G*H, in)
            w_hi, w_lo = _hi_lo(w)
            if first:
                # the first layer: the same Transpose, of [x_hi, x_lo, x] (batch, seq, 3F)
                new = f"{x}__bf16split"
                used.append(node.name)
                nodes.append(helper.make_node("Transpose", [split], [new], name=new,
                                              perm=list(src.attribute[0].ints)))
                wide = np.concatenate([w_hi, w_hi, w_lo], 2)
            else:
                new = f"{x}__bf16twice"
                nodes.append(helper.make_node("Concat", [x, x], [new], axis=2, name=new))
                wide = np.concatenate([w_hi, w_lo], 2)
            name = f"{node.input[1]}__bf16split"
            g.initializer.append(numpy_helper.from_array(wide, name))
            node.input[0], node.input[1] = new, name
            count += 1
        elif top and node.op_type == "Gemm" and node.input[1] in inits and "head" in parts:
            b = numpy_helper.to_array(inits[node.input[1]])
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            if trans_a:
                nodes.append(node)
                continue
            b_hi, b_lo = _hi_lo(b)
            a, new = node.input[0], f"{node.input[0]}__bf16twice"
            nodes.append(helper.make_node("Concat", [a, a], [new], axis=1, name=new))
            name = f"{node.input[1]}__bf16split"
            g.initializer.append(numpy_helper.from_array(
                np.concatenate([b_hi, b_lo], 1 if trans_b else 0), name))
            node.input[0], node.input[1] = new, name
            count += 1
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return count


def _initializers(g) -> dict:
    """Every initializer of `g` and of its subgraphs, by name."""
    return {i.name: i for sub in graphs(g) for i in sub.initializer}


def _last_dim(g, name: str) -> int:
    value = next(i for i in g.input if i.name == name)
    dim = value.type.tensor_type.shape.dim[-1]
    if not dim.dim_value:
        raise ValueError(f"{name}: its last dimension (features) is not fixed")
    return dim.dim_value


def splits_input(model) -> bool:
    """Whether split_products wrote the input's f32 nodes into `model`."""
    return any(n.output[0].endswith(SUFFIXES[-1]) for n in model.graph.node)


def save_ir(onnx_path: Path, xml_path: Path, marks: int | None = None) -> int:
    """Convert the split ONNX file to OpenVINO IR (xml + bin beside it), the split's f32
    nodes marked to keep f32 under the bf16 hint; returns how many were marked (ValueError
    unless `marks` were found, where given)."""
    import openvino as ov
    model = ov.Core().read_model(str(onnx_path))
    marked = 0
    for op in model.get_ordered_ops():
        if op.get_friendly_name().endswith(SUFFIXES):
            op.get_rt_info()[MARK] = ""
            marked += 1
    if marks is not None and marked != marks:
        raise ValueError(f"{onnx_path.name}: {marked} of the split's {len(SUFFIXES)} f32 "
                         "nodes found by name in OpenVINO's model")
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return marked
