"""int8: ONNX Runtime-only files on its integer kernels, rewritten from the fp32 graphs.

    model_int8.onnx, model_stream_int8.onnx   (export --precision int8; run by "onnx" only)
    quantize(model)                  the file export writes: recurrent products int8
    quantize(model, inputs=True)     every product int8 (DynamicQuantizeLSTM), measured only

`onnxruntime.quantization.quantize_dynamic` on model.onnx reaches only top-level MatMuls:
the LSTM operators sit inside an If and the recurrent products inside Scan bodies. So the
fp32 graph is rewritten here, node by node, into ORT's dynamic-quantization contrib ops
(weights 8-bit, symmetric, one scale per output row, i.e. per gate unit; activations
quantized per call, one scale per tensor):

  If whose then-branch runs the RNN, GRU or LSTM operator -> its else-branch (the Scan) at
                              every batch
  Gemm(W const, h, C) in a Scan step (the recurrent product, state feature-major (H, B))
                              -> Transpose, com.microsoft.DynamicQuantizeMatMul(h^T, W^T
                                 int8), Transpose, Add C
  MatMul(W_aug const, x)      the hoisted input projection: stays float32 (one large product
                              per call, outside the recurrence)
The linear head stays float32 too. Why only the recurrent products (docs/precision.md,
measured on a 2-layer LSTM, H=64, on verify's data): ORT quantizes a whole input sequence
with one scale (DynamicQuantizeLSTM, DynamicQuantizeMatMul), so the first layer's input,
unbounded and x10-scaled in verify's data, lost 5.1% of the output's std, its 8-bit input
weights 2.1%, the second layer's input 1.7%; the recurrent weights and states (h in -1..1)
0.1-0.4% each. Every product int8 was 7.3% of std off; the recurrent ones only, 0.49%.

`inputs=True` is that every-product form: LSTM -> com.microsoft.DynamicQuantizeLSTM (W, R
int8 transposed, the If kept) and the hoisted projection -> DynamicQuantizeMatMul (the bias
column kept float32 as the op's bias). It is faster than the Scan at batch 1 and outside
the default budget; kept for measurement (`python -m pipeline.bench_int8`).

A graph where an RNN/GRU operator remains (the GRU and tanh-RNN stream graphs run it
without an If) has no int8 form: `quantize` says so (ValueError) and export writes no int8
stream file for it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Variant, graphs

MS_DOMAIN = "com.microsoft"
NO_INT8 = ("RNN", "GRU")          # native operators with no dynamically quantized kernel


# Weights: int8 (s8) where the CPU has VNNI, else uint8 around a zero point of 128 (u8 x u8
# products); both are the same numbers (-127..127 per row), so the same error. Without VNNI
# onnxruntime's u8 x s8 kernels add pairs of products in int16 (vpmaddubsw), which
# saturates: measured on an AMD EPYC (AVX2), s8 weights put a 2-layer LSTM 12-65% of its
# output's std off; u8 ones are right on every x86 CPU. With VNNI (vpdpbusd adds in int32)
# s8 is exact too and was faster at (64, 200) and (512, 100) in most runs (docs/precision.md).
# An s8 file refuses to load on a CPU without VNNI (Int8.load), rather than run wrong.
LEVELS = 127


def cpu_has_vnni() -> bool:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def weight_type() -> str:
    """"s8" on a CPU with VNNI, else "u8" (see above)."""
    return "s8" if cpu_has_vnni() else "u8"


def quantize_rows(w: np.ndarray, levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per row: (q (N, K) int8 in -levels..levels, scale (N,)), w ~= q * scale."""
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / levels, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -levels, levels).astype(np.int8)
    return q, scale


class _Rewriter:
    def __init__(self, model, weights: str, inputs: bool):
        from onnx import numpy_helper
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.added: list = []
        self.count = 0
        self.quantized = 0
        self.left: list[str] = []      # operators that stay float32 and matter
        self.weights, self.inputs = weights, inputs
        self.scan_for = NO_INT8 if inputs else NO_INT8 + ("LSTM",)

    def name(self, hint: str) -> str:
        self.count += 1
        return f"q8_{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper
        name = self.name(hint)
        self.added.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def graph(self, g, in_scan: bool = False) -> None:
        """Rewrite graph `g` (top, If branch or Scan body) in place."""
        from onnx import helper
        nodes = []
        for node in g.node:
            if node.op_type == "If" and _runs(node, "then_branch", self.scan_for):
                else_graph = _attr(node, "else_branch")
                self.graph(else_graph, in_scan)
                nodes += list(else_graph.node)
                nodes += [helper.make_node("Identity", [o.name], [out], name=self.name("id"))
                          for o, out in zip(else_graph.output, node.output)]
                continue
            for a in node.attribute:
                if a.type == a.GRAPH:
                    self.graph(a.g, in_scan or node.op_type == "Scan")
            if node.op_type == "LSTM" and node.input[1] in self.consts and self.inputs:
                nodes.append(self.lstm(node))
            elif node.op_type in ("Gemm", "MatMul") and node.input[0] in self.consts \
                    and node.input[1] not in self.consts and not _transposed(node) \
                    and (self.inputs or in_scan):
                nodes += self.product(node)
            else:
                if node.op_type in self.scan_for:    # no Scan beside it to take instead
                    self.left.append(node.op_type)
                nodes.append(node)
        del g.node[:]
        g.node.extend(nodes)

    def stored(self, q: np.ndarray) -> np.ndarray:
        return q if self.weights == "s8" else _u8(q)

    def zero_point(self, shape) -> np.ndarray:
        return np.zeros(shape, np.int8) if self.weights == "s8" else _zp(shape)

    def lstm(self, node):
        from onnx import helper
        x, w, r, *rest = list(node.input) + [""] * (8 - len(node.input))
        ins = [x]
        scales = []
        for name in (w, r):                       # (D, 4H, K) -> int8 (D, K, 4H), (D, 4H)
            per_dir = [quantize_rows(m) for m in self.consts[name]]
            ins.append(self.const(self.stored(np.stack([q.T for q, _ in per_dir])), "w"))
            scales.append((np.stack([s for _, s in per_dir]),))
        ins += rest[:5]                           # B, sequence_lens, initial_h, initial_c, P
        for (scale,) in scales:
            ins += [self.const(scale, "scale"), self.const(self.zero_point(scale.shape), "zp")]
        self.quantized += 1
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return helper.make_node("DynamicQuantizeLSTM", ins, list(node.output),
                                name=self.name("lstm"), domain=MS_DOMAIN, **attrs)

    def product(self, node):
        """W (N, K) @ x (..., K, B) [+ C] -> int8 product on x^T, float32 out (..., N, B)."""
        from onnx import helper
        w = self.consts[node.input[0]]
        bias = None
        if node.op_type == "MatMul" and w.shape[1] > 1:   # W_aug: the last column is the bias
            bias, w = w[:, -1].copy(), np.concatenate([w[:, :-1], np.zeros_like(w[:, -1:])], 1)
        q, scale = quantize_rows(w)
        rank_perm = None
        x = node.input[1]
        t = self.name("xT")
        perm = [1, 0] if node.op_type == "Gemm" else [0, 2, 1]
        rank_perm = perm
        ins = [t, self.const(self.stored(q.T.copy()), "wq"), self.const(scale, "scale"),
               self.const(self.zero_point(scale.shape), "zp")]
        if bias is not None:
            ins.append(self.const(bias.astype(np.float32), "bias"))
        y = self.name("y")
        out = node.output[0] if len(node.input) < 3 or not node.input[2] else self.name("yT")
        nodes = [helper.make_node("Transpose", [x], [t], perm=rank_perm, name=self.name("t")),
                 helper.make_node("DynamicQuantizeMatMul", ins, [y], domain=MS_DOMAIN,
                                  name=self.name("dqmm")),
                 helper.make_node("Transpose", [y], [out], perm=rank_perm, name=self.name("t"))]
        if out != node.output[0]:
            nodes.append(helper.make_node("Add", [out, node.input[2]], [node.output[0]],
                                          name=self.name("add")))
        self.quantized += 1
        return nodes


def _u8(q: np.ndarray) -> np.ndarray:
    """int8 -127..127 -> uint8 1..255 (zero point 128)."""
    return (q.astype(np.int16) + 128).astype(np.uint8)


def _zp(shape) -> np.ndarray:
    return np.full(shape, 128, np.uint8)


def _attr(node, name: str):
    return next(a.g for a in node.attribute if a.name == name)


def _runs(node, branch: str, ops) -> bool:
    return any(n.op_type in ops for n in _attr(node, branch).node)


def _transposed(node) -> bool:
    return any(a.name in ("transA", "transB") and a.i for a in node.attribute)


def quantize(model, weights: str | None = None, inputs: bool = False):
    """The int8 ModelProto of an fp32 one (a copy); ValueError where it cannot be (an RNN or
    GRU operator outside an If, an LSTM one too unless `inputs`, or nothing to quantize).
    weights: "s8" or "u8" (default: this CPU's, weight_type()); inputs: quantize the input
    projections too (DynamicQuantizeLSTM; less accurate, see the module's docstring)."""
    import copy

    from onnx import helper
    model = copy.deepcopy(model)
    rw = _Rewriter(model, weights or weight_type(), inputs)
    rw.graph(model.graph)
    if rw.left:
        raise ValueError(f"the {rw.left[0]} operator has no int8 kernel in onnxruntime"
                         if rw.left[0] in NO_INT8 else f"the {rw.left[0]} operator has no "
                         "Scan beside it whose recurrent product alone could be int8")
    if not rw.quantized:
        raise ValueError("nothing to quantize")
    model.graph.initializer.extend(rw.added)
    used = _used_names(model.graph)
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return model


def _used_names(g) -> set[str]:
    names = set()
    for node in g.node:
        names.update(node.input)
        for a in node.attribute:
            if a.type == a.GRAPH:
                names |= _used_names(a.g)
    return names | {o.name for o in g.output}


def signed_weights(path) -> bool:
    """Whether an int8 file's quantized products take int8 (s8) weights."""
    import onnx
    model = onnx.load(str(path))
    types = {i.name: i.data_type for i in _initializers(model.graph)}
    return any(types.get(n.input[1]) == onnx.TensorProto.INT8 for n in _nodes(model.graph)
               if n.op_type in ("DynamicQuantizeMatMul", "DynamicQuantizeLSTM"))


def _nodes(g):
    return (n for sub in graphs(g) for n in sub.node)


def _initializers(g):
    return (i for sub in graphs(g) for i in sub.initializer)


class Int8(Variant):
    name, runtimes = "int8", ("onnx",)
    summary = ("recurrent products in 8 bits (weights per output row, states per step; "
               "ONNX Runtime's DynamicQuantizeMatMul), input projections and head float32")

    def files(self, spec):
        files = {"model": "model_int8.onnx"}
        if spec.has_stream and not self.missing(spec):
            files["stream"] = "model_stream_int8.onnx"
        return files

    def missing(self, spec):
        """The GRU and tanh-RNN stream graphs run their operator with no Scan beside it (a
        chain's stream graph: any such recurrent layer)."""
        from ..families import family
        ops = [family(layer.cell).native_op for layer in spec.chain if layer.kind == "recurrent"]
        op = next((op for op in ops if op in NO_INT8), None)
        if spec.has_stream and op:
            return {"stream": f"the {op} operator of the stream graph has no int8 "
                              "kernel in onnxruntime"}
        return {}

    def write(self, spec, fp32, paths):
        import onnx

        from ..errors import ExportError
        for kind, path in paths.items():
            try:
                model = quantize(onnx.load(str(fp32[kind])), weight_type())
            except ValueError as exc:        # files() promised it: missing() did not see this
                raise ExportError(f"{spec.name} {self.files(spec)[kind]}: no int8 form: "
                                  f"{exc}") from None
            onnx.checker.check_model(model)
            Path(path).write_bytes(model.SerializeToString())
        # what this CPU chose, for the manifest: the weights' type
        return {"weights": weight_type(),
                "weights_why": "this CPU has VNNI" if cpu_has_vnni() else
                "no VNNI: uint8 weights (int8 ones saturate in int16 without it)"}

    def load(self, runtime, spec, path, threads=None, stream=False):
        from ..errors import PipelineError
        from ..runtimes.ort import load_ort
        if not cpu_has_vnni() and signed_weights(path):
            raise PipelineError(f"{Path(path).name} has int8 (s8) weights, written on a CPU "
                                "with VNNI; this CPU has none and its kernels would saturate: "
                                "export --precision int8 again here")
        runner = load_ort(spec, path, "cpu", threads)
        runner.precision = "int8"
        return runner


INT8 = Int8()
