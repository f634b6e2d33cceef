"""Activation functions, elementwise or over the last axis (softmax, log_softmax).

ONNX: the standard operator where one exists (Relu, Tanh, Sigmoid, LeakyRelu, Elu, Softmax,
LogSoftmax over axis -1); gelu (exact: x/2 (1 + erf(x/sqrt 2)); tanh: torch's approximate
form) and silu (x sigmoid(x)) from plain ops, since opset 18 has no Gelu and the runtimes
differ on the contrib ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

# fn -> the torch module's class name in torch.nn (the card and import use it)
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU",
               "gelu_tanh": "GELU", "leaky_relu": "LeakyReLU", "elu": "ELU", "silu": "SiLU",
               "softmax": "Softmax", "log_softmax": "LogSoftmax"}


@dataclass(frozen=True)
class Activation:
    fn: str
    alpha: float | None = None     # leaky_relu's negative_slope, elu's alpha
    kind: str = "activation"
    per_step: ClassVar[bool] = True
    stateful: ClassVar[bool] = False

    def __post_init__(self):
        if self.fn not in ACTIVATIONS:
            raise ValueError(f"activation {self.fn!r} is not one of {', '.join(ACTIVATIONS)}")

    def out_width(self, width: int) -> int:
        return width

    def torch_module(self):
        from torch import nn
        cls = getattr(nn, ACTIVATIONS[self.fn])
        if self.fn in ("softmax", "log_softmax"):
            return cls(dim=-1)
        if self.fn.startswith("gelu"):
            return cls(approximate="tanh" if self.fn == "gelu_tanh" else "none")
        if self.fn == "leaky_relu":
            return cls(0.01 if self.alpha is None else self.alpha)
        if self.fn == "elu":
            return cls(1.0 if self.alpha is None else self.alpha)
        return cls()

    def onnx(self, b, x: str, weights: dict) -> str:
        import numpy as np
        simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
        if self.fn in simple:
            return b.op(simple[self.fn], [x])
        if self.fn in ("softmax", "log_softmax"):
            return b.op("Softmax" if self.fn == "softmax" else "LogSoftmax", [x], axis=-1)
        if self.fn == "leaky_relu":
            return b.op("LeakyRelu", [x], alpha=0.01 if self.alpha is None else self.alpha)
        if self.fn == "elu":
            return b.op("Elu", [x], alpha=1.0 if self.alpha is None else self.alpha)
        if self.fn == "silu":
            return b.op("Mul", [x, b.op("Sigmoid", [x])])

        def c(v):
            return b.const(np.float32(v), "k")
        if self.fn == "gelu":
            inner = b.op("Erf", [b.op("Mul", [x, c(1 / math.sqrt(2))])])
        else:      # tanh(sqrt(2/pi) (x + 0.044715 x^3))
            cube = b.op("Mul", [b.op("Mul", [x, x]), x])
            inner = b.op("Tanh", [b.op("Mul", [b.op("Add", [x, b.op("Mul", [cube, c(0.044715)])]),
                                               c(math.sqrt(2 / math.pi))])])
        return b.op("Mul", [b.op("Mul", [x, c(0.5)]), b.op("Add", [inner, c(1.0)])])

    def flops(self) -> int:
        return 0          # per element, negligible beside the matrix products

    def describe(self) -> str:
        over = " over the last axis" if "softmax" in self.fn else ""
        alpha = f" ({self.alpha:g})" if self.alpha is not None else ""
        return f"{self.fn}{alpha}{over}"
