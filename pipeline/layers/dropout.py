"""Dropout: the identity at inference; recorded so the chain reads like the user's forward."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Dropout:
    p: float = 0.5
    kind: str = "dropout"
    per_step: ClassVar[bool] = True
    stateful: ClassVar[bool] = False

    def out_width(self, width: int) -> int:
        return width

    def torch_module(self):
        from torch import nn
        return nn.Dropout(self.p)          # eval(): the identity

    def onnx(self, b, x: str, weights: dict) -> str:
        return x                           # no node: nothing happens at inference

    def flops(self) -> int:
        return 0

    def describe(self) -> str:
        return f"Dropout (p={self.p:g}, the identity at inference)"
