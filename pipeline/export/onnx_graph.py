"""ONNX export with truly dynamic `batch` and `seq` axes, through torch.export (dynamo=True).

Why not the obvious calls (measured on torch 2.13): `torch.onnx.export(dynamo=True)` on the
models as written specializes `seq` to the example length (the loop and nn.RNN are
unrolled while tracing), and the deprecated TorchScript-based exporter and `jit.trace`
unroll the forecaster's loop behind a symbolic-looking `seq` axis. So we export an
equivalent module that expresses the recurrence in forms torch.export keeps symbolic:

  If(batch <= small_batch(H))            (H x batch <= ~100: batch 1-12 / 1-5 here)
    then: the standard ONNX `RNN` operator, reached through a custom op
          (`rnnpipe::rnn_tanh`) given an ONNX translation; one kernel for all steps at
          ~0.2 us a step, the least per-call overhead: fastest at small batch
    else: feature-major: one 2-D Transpose of x, one MatMul projecting every step's input
          (bias folded in through a ones row), then a `Scan` whose body is one Gemm + Tanh
          (from torch's `scan` higher-order op; ORT fuses them into one kernel per step);
          onnxruntime's RNN kernel slows with batch x H (0.4x eager at batch 512), this
          form keeps ~2-3 us a step.
  Gemm: the linear head on the last hidden state.

Every op is a standard ONNX op (If, RNN, Scan, Gemm, MatMul, Tanh, Transpose, Concat,
shape ops), so any conformant runtime can run the graph; nothing relies on onnxruntime's
contrib ops (an offline-optimized ORT model would contain com.microsoft FusedGemm, so we
ship the plain graph and let each session fuse at load). Both branches are proved at
several lengths by the export self-check. Measured by `python -m pipeline bench`; the
numbers behind each choice (one thread, ratio to eager in the same run) are in the
comments below and the closing note of issue 6.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError, first_line
from ..specs import ModelSpec

# batch <= small_batch(H) runs the RNN-operator branch, larger batches the Scan branch.
# onnxruntime's RNN kernel costs ~0.2 us per step at batch 1 but grows with batch x H,
# while a Scan step costs ~1-2 us of fixed dispatch plus a well-blocked Gemm; measured
# (seq 100, one thread) they cross at batch ~12 for H = 8 and ~5 for H = 20, i.e. near
# batch x H = 100.
RNN_OP_MAX_ELEMENTS = 100


def small_batch(hidden_size: int) -> int:
    return max(1, RNN_OP_MAX_ELEMENTS // hidden_size)


@torch.library.custom_op("rnnpipe::rnn_tanh", mutates_args=())
def rnn_tanh(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """Last hidden state of a one-layer tanh RNN from a zero state; x (batch, seq, F) -> (batch, H).

    The eager body is the reference semantics; the exporter replaces the whole op by
    `_rnn_tanh_onnx`, so the sequence length never reaches the tracer.
    """
    h = x.new_zeros(x.size(0), w_hh.size(0))
    for t in range(x.size(1)):
        h = torch.tanh(torch.addmm(b_ih, x[:, t], w_ih.t()) + torch.addmm(b_hh, h, w_hh.t()))
    return h


@rnn_tanh.register_fake
def _(x, w_ih, w_hh, b_ih, b_hh):
    return x.new_empty(x.size(0), w_hh.size(0))


def _rnn_tanh_onnx(hidden_size: int):
    """ONNX translation of `rnn_tanh`: the standard RNN operator with an explicit zero state."""
    from onnxscript import opset18 as op

    def rnn_tanh_onnx(x, w_ih, w_hh, b_ih, b_hh):
        xt = op.Transpose(x, perm=[1, 0, 2])                      # (seq, batch, F): layout 0
        w = op.Unsqueeze(w_ih, [0])                               # (1, H, F), 1 = num_directions
        r = op.Unsqueeze(w_hh, [0])                               # (1, H, H)
        b = op.Unsqueeze(op.Concat(b_ih, b_hh, axis=0), [0])      # (1, 2H) = [Wb | Rb]
        # initial_h is given explicitly (zeros), though the operator defaults to them:
        # runtimes differ in how they treat omitted optional inputs, and an explicit state
        # costs ~1-2 us (Shape, Concat, ConstantOfShape) of a ~15-25 us batch-1 call.
        batch = op.Shape(x, start=0, end=1)
        h0 = op.ConstantOfShape(op.Concat(op.Constant(value_ints=[1]), batch,
                                          op.Constant(value_ints=[hidden_size]), axis=0))
        _, h_last = op.RNN(xt, w, r, b, None, h0, hidden_size=hidden_size)  # (1, batch, H)
        return op.Squeeze(h_last, [0])                            # (batch, H)

    return rnn_tanh_onnx


def _scan_rnn(x, w_aug, w_hh):
    """Same recurrence as `rnn_tanh`, feature-major, input projection hoisted out of the loop.

    x (batch, seq, F); w_aug (H, F+1) = [W_ih | b_ih + b_hh]; w_hh (H, H). The state is
    kept as (H, batch): each step is one (H, H) x (H, batch) Gemm, batch-wide rows for the
    SIMD lanes, and x needs a single 2-D transpose. The batch-major form (state (batch, H))
    needed a 3-D (B, S, .) -> (S, B, .) Transpose, which onnxruntime copies one F- or
    H-float row at a time (ORT profile, classifier (512, 100): as long as all 100 steps).
    Measured against it in the same run (one thread): 1.35x / 1.2x faster for the
    forecaster at (64, 200) / (512, 100), 1.4x / 1.95x for the classifier.
    """
    from torch._higher_order_ops import scan

    batch, seq, features = x.shape
    xf = x.reshape(batch, seq * features).t().contiguous().reshape(seq, features, batch)
    # a ones row per step carries the bias through the product: no Add over (S, H, B)
    xf1 = torch.cat([xf, x.new_ones(seq, 1, batch)], dim=1)        # (S, F+1, B)
    proj = torch.matmul(w_aug, xf1)                                 # (S, H, B), one MatMul

    def step(h, p_t):                       # h, p_t: (H, batch)
        # Gemm with C=p_t, fused with Tanh by ORT; no per-step output (only the last state
        # is used), so the Scan body is this one node
        return torch.tanh(torch.addmm(p_t, w_hh, h)), []

    h = scan(step, x.new_zeros(w_hh.size(0), batch), proj, dim=0)[0]   # (H, batch)
    return h.t().contiguous()               # (batch, H); both If branches must be contiguous


def rnn_parameters(model: nn.Module, spec: ModelSpec):
    """(w_ih, w_hh, b_ih, b_hh, head) of either seed architecture."""
    if spec.arch == "rnn_cell_loop":
        c = model.rnn_cell
        return c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh, model.linear
    r = model.rnn
    return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0, model.fc


class ExportForm(nn.Module):
    """The model's computation in export-friendly form; shares (does not copy) its parameters."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, x):                   # x: (batch, seq, F)
        w_ih, w_hh, b_ih, b_hh, head = rnn_parameters(self.model, self.spec)
        # w_aug is built outside torch.cond (it folds to one initializer): a view made
        # inside a branch fails export with "cond_true might be aliasing the input or the output".
        w_aug = torch.cat([w_ih, (b_ih + b_hh).unsqueeze(1)], dim=1)      # (H, F+1)
        h = torch.cond(
            x.size(0) <= small_batch(self.spec.hidden_size),
            lambda x, wi, wh, bi, bh, wa: rnn_tanh(x, wi, wh, bi, bh),
            lambda x, wi, wh, bi, bh, wa: _scan_rnn(x, wa, wh),
            (x, w_ih, w_hh, b_ih, b_hh, w_aug))
        return head(h)                      # (batch, outputs)


def export_onnx(model: nn.Module, spec: ModelSpec, path: Path, opset: int) -> None:
    """Write `model` as ONNX with input (batch, seq, F) and output (batch, O) symbolic."""
    import logging
    import warnings

    # The exporter logs a warning per torchvision op it cannot register; we use none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    # The Scan has no per-step output, so scan_output_directions is an empty list, which
    # onnx_ir warns is ambiguous before typing it INTS, the type the Scan spec wants.
    logging.getLogger("onnx_ir._convenience").setLevel(logging.ERROR)
    example = torch.zeros(spec.example_batch, spec.example_seq, spec.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # exporter-internal deprecation chatter
        program = torch.onnx.export(
            ExportForm(model, spec).eval(), (example,), dynamo=True, opset_version=opset,
            input_names=[spec.input_name], output_names=[spec.output_name],
            dynamic_shapes={"x": {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}},
            custom_translation_table={
                torch.ops.rnnpipe.rnn_tanh.default: _rnn_tanh_onnx(spec.hidden_size)},
            verbose=False, report=False)
    program.save(str(path), external_data=False)   # one self-contained file, hashed whole


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _op_types(graph) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:          # If branches and Scan bodies are subgraphs
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") or attr.graphs else []:
                ops |= _op_types(sub)
    return ops


def describe(path: Path, spec: ModelSpec, inputs=None, outputs=None) -> dict:
    """Check the ONNX file (checker full_check, signature vs spec); return its facts.

    `inputs`/`outputs`: the TensorSpecs the graph must declare, in order; default the
    spec's one input and output (the stream graph passes spec.stream_inputs/outputs)."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
        raise ExportError(f"{spec.name}: ONNX checker rejects the graph: "
                          f"{first_line(exc)}") from None
    dtype = onnx.helper.tensor_dtype_to_np_dtype
    for got, wants in ((model.graph.input, inputs or (spec.input,)),
                       (model.graph.output, outputs or (spec.output,))):
        if [v.name for v in got] != [w.name for w in wants]:
            raise ExportError(f"{spec.name}: graph tensors {[v.name for v in got]}, spec "
                              f"wants {[w.name for w in wants]}")
        for value, want in zip(got, wants):
            if _dims(value) != list(want.shape) or \
                    str(dtype(value.type.tensor_type.elem_type)) != want.dtype:
                raise ExportError(f"{spec.name}: {want.name} is {_dims(value)}, spec wants "
                                  f"{list(want.shape)} {want.dtype}")
    return {
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
        "ops": sorted(_op_types(model.graph)),
        "domains": sorted({o.domain or "ai.onnx" for o in model.opset_import}),
    }
