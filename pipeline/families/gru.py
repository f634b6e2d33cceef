"""The GRU family: nn.GRU / nn.GRUCell; one state, h.

torch (gates r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h

ONNX's GRU operator orders its gates z, r, h and by default applies r before the recurrent
product (r * h, then W_hn); torch's formula is its `linear_before_reset=1` variant. So the
native form reorders the gate blocks (r, z, n) -> (z, r, n) and sets linear_before_reset=1;
either mistake alone computes another network (tests/families/test_onnx_traps.py shows
verify failing both). The Scan step keeps torch's order and b_hn inside the product.

Forms (onnxruntime 1.31, one thread, H = 64, F = 16, 1 / 2 layers, ratio to eager PyTorch
in the same run, 2-core VM under load): the operator 5.2x / 5.5x at (1, 50), 3.1x / 3.3x
at (8, 50), 2.7x / 3.0x at (32, 100), 1.6x / 1.5x at (64, 200), 1.8x / 1.7x at (512, 100);
the Scan 1.9x, 1.5x, 2.7x, 2.0x / 2.2x, 2.9x / 3.3x. They cross at batch ~32 (H = 64):
model.onnx runs the operator up to batch x H = 2048.
"""
from __future__ import annotations

import numpy as np
from torch import nn

from .base import Family, Weights


class GRU(Family):
    cell, gates, states, stack_name, cell_name = "gru", 3, 1, "nn.GRU", "nn.GRUCell"
    native_op = "GRU"
    onnx_order = (1, 0, 2)       # torch r, z, n -> ONNX z, r, h
    scan_order = (0, 1, 2)
    native_max_elements = 2048   # measured: see the module docstring

    def torch_stack(self, spec):
        return nn.GRU(spec.input_size, spec.hidden_size, spec.num_layers, batch_first=True,
                      bidirectional=spec.bidirectional)

    def torch_cell(self, spec):
        return nn.GRUCell(spec.input_size, spec.hidden_size)

    def native_attrs(self, hidden):
        return {"hidden_size": hidden, "linear_before_reset": 1}

    def scan_weights(self, w: Weights):
        h = w.w_hh.shape[1]
        # r, z take both biases in the hoisted projection; n only b_in (b_hn stays inside r *)
        bias = w.b_ih + np.concatenate([w.b_hh[:2 * h], np.zeros(h, w.b_hh.dtype)])
        w_aug = np.concatenate([w.w_ih, bias[:, None]], axis=1)           # (3H, F + 1)
        return w_aug, {"r_rz": w.w_hh[:2 * h], "r_n": w.w_hh[2 * h:],
                       "b_hn": w.b_hh[2 * h:, None]}                      # (H, 1) broadcast

    def scan_step(self, b, p, states, consts, hidden):
        h = states[0]                                                    # (H, batch)
        p_rz, p_n = b.op("Split", [p, b.ints(2 * hidden, hidden)], 2, axis=0)
        rz = b.op("Sigmoid", [b.op("Gemm", [consts["r_rz"], h, p_rz])])  # (2H, batch)
        r, z = b.op("Split", [rz], 2, axis=0, num_outputs=2)
        hn = b.op("Gemm", [consts["r_n"], h, consts["b_hn"]])           # W_hn h + b_hn
        n = b.op("Tanh", [b.op("Add", [p_n, b.op("Mul", [r, hn])])])
        return [b.op("Add", [n, b.op("Mul", [z, b.op("Sub", [h, n])])])]  # n + z (h - n)


GRU_FAMILY = GRU()
