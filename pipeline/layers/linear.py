"""Linear: y = x W^T + b on the last axis, per step or per row (nn.Linear)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Linear:
    inputs: int
    outputs: int
    bias: bool = True
    kind: str = "linear"
    per_step: ClassVar[bool] = True      # keeps whatever axes come in
    stateful: ClassVar[bool] = False

    def __post_init__(self):
        if min(self.inputs, self.outputs) < 1:
            raise ValueError("linear: sizes must be >= 1")

    def out_width(self, width: int) -> int:
        return self.outputs

    def torch_module(self):
        from torch import nn
        return nn.Linear(self.inputs, self.outputs, bias=self.bias)

    def onnx(self, b, x: str, weights: dict) -> str:
        """MatMul with W^T (any rank: (B, S, F) or (B, F)), then the bias."""
        import numpy as np
        y = b.op("MatMul", [x, b.const(np.ascontiguousarray(weights["weight"].T))])
        return b.op("Add", [y, b.const(weights["bias"])]) if self.bias else y

    def flops(self) -> int:
        return 2 * self.inputs * self.outputs

    def describe(self) -> str:
        return f"Linear ({self.inputs} -> {self.outputs}{'' if self.bias else ', no bias'})"
