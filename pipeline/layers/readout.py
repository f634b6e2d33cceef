"""Readout: (batch, seq, W) per-step outputs of a recurrent layer -> (batch, W') per row.

  last_step          out[:, -1]                      W' = W
                     (with lengths: out[torch.arange(B), lengths - 1], the whole width;
                     for a bidirectional layer the backward half has seen that step only)
  final_state        h_n[-1]: the top layer's last direction's final state
                     (= out[:, -1] one-way; out[:, 0, H:] for the backward direction)
  final_state_both   cat(h_n[-2], h_n[-1]): both directions' final states (bidirectional)
  mean, max          over time                       W' = W

With per-row lengths (a packed forward, or a stream), a one-way final state and the last
step are read at each row's own last valid step (lengths - 1), so padding is never read.
A chain without a readout gives an output per step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

READOUTS = ("last_step", "final_state", "final_state_both", "mean", "max")
# readouts a stream can give: the row's state after its last valid step
STREAMABLE = ("last_step", "final_state")


@dataclass(frozen=True)
class Readout:
    how: str
    width: int               # W, the recurrent layer's output: directions x hidden
    directions: int = 1
    kind: str = "readout"
    per_step: ClassVar[bool] = False
    stateful: ClassVar[bool] = False

    def __post_init__(self):
        if self.how not in READOUTS:
            raise ValueError(f"readout {self.how!r} is not one of {', '.join(READOUTS)}")
        if self.how == "final_state_both" and self.directions != 2:
            raise ValueError("readout final_state_both needs a bidirectional layer")

    @property
    def hidden(self) -> int:
        return self.width // self.directions

    def out_width(self, width: int) -> int:
        return self.hidden if self.how == "final_state" and self.directions == 2 else width

    def torch_module(self):
        from .modules import ReadoutModule
        return ReadoutModule(self.how, self.hidden, self.directions)

    def onnx(self, b, x: str, weights: dict, lengths: str | None = None) -> str:
        """x (B, S, W) -> (B, W'); `lengths` (B,) int64 reads one-way final states at each
        row's last valid step, None at the last step of all."""
        import numpy as np
        if self.how in ("mean", "max"):
            return b.op("ReduceMean" if self.how == "mean" else "ReduceMax", [x, b.ints(1)],
                        keepdims=0)

        def last():      # (B, W) at each row's last valid step, or at seq - 1
            if lengths is None:
                seq = b.op("Shape", [x], start=1, end=2)
                return b.op("Gather", [x, b.op("Squeeze", [b.op("Sub", [seq, b.ints(1)]),
                                                           b.ints(0)])], axis=1)
            idx = b.op("Add", [b.op("Reshape", [lengths, b.ints(-1, 1, 1)]),
                               b.const(-np.ones((1, self.width), np.int64), "minus1", np.int64)])
            return b.op("Squeeze", [b.op("GatherElements", [x, idx], axis=1), b.ints(1)])

        if self.how == "last_step" or self.directions == 1:
            return last()
        first = b.op("Gather", [x, b.const(0, "k", np.int64)], axis=1)       # (B, 2H)
        _, back = b.op("Split", [first], 2, axis=1, num_outputs=2)           # (B, H) each
        if self.how == "final_state":
            return back
        fwd, _ = b.op("Split", [last()], 2, axis=1, num_outputs=2)
        return b.op("Concat", [fwd, back], axis=1)

    def flops(self) -> int:
        return 0

    def describe(self, at_lengths: bool = False) -> str:
        """`at_lengths`: the chain takes lengths (packed), so last_step is each row's own."""
        if at_lengths and self.how == "last_step":
            return "each row's last valid step's output (out[torch.arange(B), lengths - 1])"
        return {"last_step": "the last step's output (out[:, -1])",
                "final_state": "the top layer's final state (h_n[-1])",
                "final_state_both": "both directions' final states (cat(h_n[-2], h_n[-1]))",
                "mean": "the mean over time", "max": "the maximum over time"}[self.how]
