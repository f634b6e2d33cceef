"""Embedding: int64 token ids (batch, seq) -> vectors (batch, seq, dim); first layer only.

ONNX: one Gather of the table's rows. Ids must lie in 0..num-1: verify draws them there and
predict/score refuse others before a runtime sees them (a Gather out of range is an error
in some runtimes and garbage in others). padding_idx only shapes training (its row's
gradient is zero); at inference it is a row like any other and is recorded for the card.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Embedding:
    num: int                   # vocabulary size: ids 0..num-1
    dim: int
    padding_idx: int | None = None
    kind: str = "embedding"
    per_step: ClassVar[bool] = True
    stateful: ClassVar[bool] = False

    def __post_init__(self):
        if min(self.num, self.dim) < 1:
            raise ValueError("embedding: sizes must be >= 1")

    def out_width(self, width: int) -> int:
        return self.dim

    def torch_module(self):
        from torch import nn
        return nn.Embedding(self.num, self.dim, padding_idx=self.padding_idx)

    def onnx(self, b, x: str, weights: dict) -> str:
        return b.op("Gather", [b.const(weights["weight"]), x], axis=0)    # (B, S, dim)

    def flops(self) -> int:
        return 0               # a row lookup

    def describe(self) -> str:
        pad = f", padding_idx {self.padding_idx}" if self.padding_idx is not None else ""
        return f"Embedding ({self.num} token ids -> {self.dim}{pad})"
