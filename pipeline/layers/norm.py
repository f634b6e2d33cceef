"""LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias.

ONNX: written from plain ops (ReduceMean, Sub, Mul, Add, Sqrt, Div) rather than opset 17's
LayerNormalization, so every runtime the pipeline proves (tract, OpenVINO, the reference
evaluator) runs the same arithmetic; the variance is the biased one, as torch's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class LayerNorm:
    size: int
    eps: float = 1e-5
    affine: bool = True        # elementwise_affine: a weight (and a bias unless bias=False)
    bias: bool = True
    kind: str = "layer_norm"
    per_step: ClassVar[bool] = True
    stateful: ClassVar[bool] = False

    def out_width(self, width: int) -> int:
        return width

    def torch_module(self):
        from torch import nn
        return nn.LayerNorm(self.size, eps=self.eps, elementwise_affine=self.affine,
                            bias=self.bias and self.affine)

    def onnx(self, b, x: str, weights: dict) -> str:
        import numpy as np
        axes = b.ints(-1)
        centred = b.op("Sub", [x, b.op("ReduceMean", [x, axes], keepdims=1)])
        var = b.op("ReduceMean", [b.op("Mul", [centred, centred]), axes], keepdims=1)
        std = b.op("Sqrt", [b.op("Add", [var, b.const(np.float32(self.eps), "eps")])])
        y = b.op("Div", [centred, std])
        if self.affine:
            y = b.op("Mul", [y, b.const(weights["weight"])])
            if self.bias:
                y = b.op("Add", [y, b.const(weights["bias"])])
        return y

    def flops(self) -> int:
        return 8 * self.size

    def describe(self) -> str:
        what = "" if self.affine else ", no affine"
        return f"LayerNorm ({self.size}, eps {self.eps:g}{what})"
