"""The two seed models, rebuilt from a `ModelSpec`.

Parameter names and shapes are exactly the seeds' (`rnn_cell.weight_ih`, ..., `linear.bias`
and `rnn.weight_ih_l0`, ..., `fc.bias`), so our weights load with `strict=True` into the
seed documents' own classes and theirs into ours.

    >>> from pipeline.models import build_model
    >>> from pipeline.specs import SPECS
    >>> build_model(SPECS["classifier"])(torch.randn(3, 7, 5)).shape
    torch.Size([3, 2])
"""
from __future__ import annotations

import torch
from torch import nn

from .specs import ModelSpec


class Forecaster(nn.Module):
    """Seed 000: an `nn.RNNCell` stepped in a Python loop, then a linear head."""

    def __init__(self, input_size: int = 10, hidden_size: int = 20, output_size: int = 1):
        super().__init__()
        self.hidden_size = hidden_size
        self.rnn_cell = nn.RNNCell(input_size, hidden_size)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # inputs: (batch, seq, features). The seed made its zero state with torch.zeros on
        # the CPU in float32; new_zeros follows the input's device and dtype instead.
        hidden = inputs.new_zeros(inputs.size(0), self.hidden_size)  # (batch, hidden)
        for t in range(inputs.size(1)):
            hidden = self.rnn_cell(inputs[:, t], hidden)
        return self.linear(hidden)  # (batch, output)


class Classifier(nn.Module):
    """Seed 001: `nn.RNN(batch_first=True)`; the last step's output feeds a linear head."""

    def __init__(self, input_size: int = 5, hidden_size: int = 8, output_size: int = 2):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)           # (batch, seq, hidden); nn.RNN's zero state follows x
        return self.fc(out[:, -1, :])  # (batch, classes) logits


ARCHS: dict[str, type[nn.Module]] = {"rnn_cell_loop": Forecaster, "rnn": Classifier}


def build_model(spec: ModelSpec) -> nn.Module:
    return ARCHS[spec.arch](spec.input_size, spec.hidden_size, spec.output_size)
