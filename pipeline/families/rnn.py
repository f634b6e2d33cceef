"""The Elman RNN family: nn.RNN / nn.RNNCell, tanh or relu; one state, h.

    h' = act(W_ih x + b_ih + W_hh h + b_hh)

ONNX: tanh runs the standard `RNN` operator at small batch (one kernel for all steps,
~0.2 us a step) and a Scan of one Gemm + Tanh (fused by onnxruntime) above batch x H =
100, where onnxruntime's RNN kernel slows with batch x H (measured for the seeds, issue 6:
they cross near batch 12 at H = 8 and batch 5 at H = 20). relu never uses the operator:
tract ignores its `activations` and computes tanh (max error 0.18 on a 2-layer ReLU RNN,
no error raised) and the ONNX reference evaluator refuses 'Relu', so relu is the Scan of
Gemm + Relu at every batch, which every runtime computes right.
"""
from __future__ import annotations

from torch import nn

from .base import Family


class RNN(Family):
    gates, states, stack_name, cell_name = 1, 1, "nn.RNN", "nn.RNNCell"

    def __init__(self, nonlinearity: str):
        self.nonlinearity = nonlinearity
        self.cell = f"rnn_{nonlinearity}"
        self.native_op = "RNN" if nonlinearity == "tanh" else None
        self.native_max_elements = 100 if nonlinearity == "tanh" else 0

    def torch_stack(self, spec):
        return nn.RNN(spec.input_size, spec.hidden_size, spec.num_layers,
                      nonlinearity=self.nonlinearity, batch_first=True,
                      bidirectional=spec.bidirectional)

    def torch_cell(self, spec):
        return nn.RNNCell(spec.input_size, spec.hidden_size, nonlinearity=self.nonlinearity)

    def scan_step(self, b, p, states, consts, hidden):
        # Gemm with C = p: W_hh h + (W_ih x + b), then the activation; onnxruntime fuses them
        act = "Tanh" if self.nonlinearity == "tanh" else "Relu"
        return [b.op(act, [b.op("Gemm", [consts["r"], states[0], p])])]

    def detail(self):
        return f", {self.nonlinearity}"


RNN_TANH, RNN_RELU = RNN("tanh"), RNN("relu")
