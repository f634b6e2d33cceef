"""The stream artifacts: a stateful, length-aware form of each model (issue 13).

    model_stream.onnx / model_stream.pt:
      forward(input (batch, seq, F), lengths (batch,) int64, h_in (batch, H))
        -> (output (batch, O), h_out (batch, H))

Row i runs the recurrence from `h_in[i]` over its first `lengths[i]` steps (1 <= length <=
seq; the padding after them is never read into the result), `h_out[i]` is the hidden state
after its last valid step and `output[i]` the head on it. Feeding `h_out` back as `h_in`
continues a stream; zeros start one. Names and shapes come from the spec
(`ModelSpec.stream_inputs` / `stream_outputs`).

ONNX form (one branch, no If):
    RNN(all steps, initial_h = h_in) -> Y (seq, 1, batch, H)
    GatherElements(Y, lengths - 1 broadcast over H, axis 0) -> (batch, H) = h_out
    Gemm head -> output
Why: the RNN op's own `sequence_lens` is not portable (OpenVINO silently ignores it, tract
refuses a non-constant one, onnxruntime returns Y_h = 0 for a length-0 row), while running
every step and gathering each row's last valid state was correct in onnxruntime, OpenVINO
and tract (measured for issue 13). No If/Scan large-batch branch as in model.onnx: the If
and its condition cost ~2.4 us of a ~5 us streaming step (batch 1, seq 1), the quantity
this artifact exists for; whole long sequences at large batch stay model.onnx's job.
`lengths - 1` is folded into one Add with a constant row of -1s, and nothing clamps the
lengths in the graph (tract rejects the clamp): callers validate them first
(`pipeline.predict.check_stream_feeds`); a length of 0 would read index -1 = the last step.

TorchScript form: the model's own layers (nn.RNN with h0, or the RNNCell loop with a
per-row masked update), with the same validation raising inside the module, so a served
TorchScript model refuses bad lengths itself.

`reference_stream` is the eager reference: row by row, the trained model's own layers on
the unpadded sequence from h_in (no batching, no gather), what verify compares against.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..specs import ModelSpec
from .onnx_graph import rnn_parameters


@torch.library.custom_op("rnnpipe::rnn_tanh_stream", mutates_args=())
def rnn_tanh_stream(x: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor,
                    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                    b_hh: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row after its own last valid step; x (batch, seq, F) -> (batch, H).

    The eager body is the reference semantics; the exporter replaces the op by
    `_rnn_tanh_stream_onnx`, so the sequence length never reaches the tracer.
    """
    h = h_in
    for t in range(x.size(1)):
        new = torch.tanh(torch.addmm(b_ih, x[:, t], w_ih.t()) + torch.addmm(b_hh, h, w_hh.t()))
        h = torch.where((lengths > t).unsqueeze(1), new, h)      # rows past their end keep h
    return h.clone()


@rnn_tanh_stream.register_fake
def _(x, lengths, h_in, w_ih, w_hh, b_ih, b_hh):
    return x.new_empty(x.size(0), w_hh.size(0))


def _rnn_tanh_stream_onnx(hidden_size: int):
    """ONNX translation: the RNN operator over all steps, then each row's state at length-1."""
    from onnxscript import opset18 as op

    def rnn_tanh_stream_onnx(x, lengths, h_in, w_ih, w_hh, b_ih, b_hh):
        xt = op.Transpose(x, perm=[1, 0, 2])                      # (seq, batch, F): layout 0
        w = op.Unsqueeze(w_ih, [0])                               # (1, H, F)
        r = op.Unsqueeze(w_hh, [0])                               # (1, H, H)
        b = op.Unsqueeze(op.Concat(b_ih, b_hh, axis=0), [0])      # (1, 2H) = [Wb | Rb]
        h0 = op.Unsqueeze(h_in, [0])                              # (1, batch, H)
        # onnxruntime's RNN kernel supports layout 0 only ("Batchwise recurrent operations
        # (layout == 1) are not supported"), hence the Transpose.
        y, _ = op.RNN(xt, w, r, b, None, h0, hidden_size=hidden_size)   # (seq, 1, batch, H)
        # (1, 1, batch, 1) + (H,) of -1: lengths - 1 broadcast over H in one Add
        index = op.Add(op.Reshape(lengths, op.Constant(value_ints=[1, 1, -1, 1])),
                       op.Constant(value_ints=[-1] * hidden_size))
        h = op.GatherElements(y, index, axis=0)                   # (1, 1, batch, H)
        return op.Reshape(h, op.Constant(value_ints=[-1, hidden_size]))  # (batch, H)

    return rnn_tanh_stream_onnx


class StreamExportForm(nn.Module):
    """forward(x, lengths, h_in) -> (output, h_out) for torch.export; shares the parameters."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, x, lengths, h_in):
        w_ih, w_hh, b_ih, b_hh, head = rnn_parameters(self.model, self.spec)
        h = rnn_tanh_stream(x, lengths, h_in, w_ih, w_hh, b_ih, b_hh)   # (batch, H)
        return head(h), h


def example_feeds(spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, seq = spec.example_batch, spec.example_seq
    return (torch.zeros(batch, seq, spec.input_size), torch.full((batch,), seq),
            torch.zeros(batch, spec.hidden_size))


def export_stream_onnx(model: nn.Module, spec: ModelSpec, path: Path, opset: int) -> None:
    """Write the stream graph with symbolic batch and seq (same exporter as model.onnx)."""
    import logging
    import warnings

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    names = [t.name for t in spec.stream_inputs], [t.name for t in spec.stream_outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # exporter-internal deprecation chatter
        program = torch.onnx.export(
            StreamExportForm(model, spec).eval(), example_feeds(spec), dynamo=True,
            opset_version=opset, input_names=names[0], output_names=names[1],
            dynamic_shapes={"x": {0: batch, 1: seq}, "lengths": {0: batch},
                            "h_in": {0: batch}},
            custom_translation_table={
                torch.ops.rnnpipe.rnn_tanh_stream.default: _rnn_tanh_stream_onnx(spec.hidden_size)},
            verbose=False, report=False)
    program.save(str(path), external_data=False)


def _check(x: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor, hidden: int) -> None:
    """The stream input contract, raised inside TorchScript too (a served model refuses)."""
    if x.dim() != 3 or x.size(1) < 1:
        raise ValueError("input must be (batch, seq >= 1, features)")
    if lengths.dim() != 1 or lengths.size(0) != x.size(0):
        raise ValueError("lengths must be (batch,), one length per input row")
    if h_in.dim() != 2 or h_in.size(0) != x.size(0) or h_in.size(1) != hidden:
        raise ValueError("h_in must be (batch, hidden), batch as the input's")
    if bool((lengths < 1).any()) or bool((lengths > x.size(1)).any()):
        raise ValueError("every length must be in 1..seq")


class RNNStream(nn.Module):
    """Classifier (nn.RNN) stream form: all states from h_in, each row's at length - 1."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.rnn, self.fc = model.rnn, model.fc

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor):
        _check(input, lengths, h_in, self.rnn.hidden_size)
        out, _ = self.rnn(input, h_in.unsqueeze(0).contiguous())   # (batch, seq, H)
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        h = out.gather(1, index).squeeze(1)                         # (batch, H)
        return self.fc(h), h


class CellLoopStream(nn.Module):
    """Forecaster (RNNCell loop) stream form: rows past their length keep their state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.rnn_cell, self.linear = model.rnn_cell, model.linear

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor):
        _check(input, lengths, h_in, self.rnn_cell.hidden_size)
        h = h_in
        for t in range(input.size(1)):
            new = self.rnn_cell(input[:, t], h)
            h = torch.where((lengths > t).unsqueeze(1), new, h)
        return self.linear(h), h


STREAM_FORMS = {"rnn": RNNStream, "rnn_cell_loop": CellLoopStream}


def export_stream_torchscript(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # see stage.export_torchscript
        torch.jit.save(torch.jit.script(STREAM_FORMS[spec.arch](model).eval()), str(path))


class StreamReference:
    """Eager reference: each row alone, unpadded, through the model's own layers from h_in."""

    def __init__(self, model: nn.Module, spec: ModelSpec):
        self.model, self.spec = model.eval(), spec

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor):
        _check(x, lengths, h_in, self.spec.hidden_size)
        w = rnn_parameters(self.model, self.spec)
        states = []
        for i, n in enumerate(lengths.tolist()):
            row = x[i:i + 1, :n]                                    # (1, n, F)
            if self.spec.arch == "rnn":
                _, h = self.model.rnn(row, h_in[i].view(1, 1, -1))  # (1, 1, H)
                states.append(h[0])
            else:
                h = h_in[i:i + 1]
                for t in range(n):
                    h = self.model.rnn_cell(row[:, t], h)
                states.append(h)
        h = torch.cat(states)                                       # (batch, H)
        return w[4](h), h
