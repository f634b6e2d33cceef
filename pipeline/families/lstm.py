"""The LSTM family: nn.LSTM / nn.LSTMCell; two states, h and c.

torch (gates i, f, g, o):
    i, f, o = sigmoid(W_i* x + b_i* + W_h* h + b_h*)    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    c' = f * c + i * g                                   h' = o * tanh(c')

ONNX's LSTM operator orders its gates i, o, f, c (c = torch's g), so the native form
reorders the blocks; the Scan step orders them i, f, o, g so that one Sigmoid covers the
first 3H rows and one Tanh the last H. `proj_size` (weight_hr) is refused at import.

Forms (onnxruntime 1.31, one thread, 2 layers, H = 64, F = 16, median of repeated calls;
ratio to eager PyTorch, which runs oneDNN's fused LSTM, in the same run): the native
operator 2.3x at (1, 50), 1.2x at (8, 50), 0.74x at (64, 200), 0.84x at (512, 100); the
Scan 0.45x, 0.45x, 0.72x, 1.03x. So model.onnx runs the operator up to batch x H = 4096
and the Scan above. The stream graph needs c at each row's own last step, which the
operator does not output per step: it runs the operator only when every row is full
length (a streaming step, a chunk), and otherwise the Scan, which emits c per step.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import CellLoop, Family, check_stream, from_layers, packed, to_layers


class LSTM(Family):
    cell, gates, states, stack_name, cell_name = "lstm", 4, 2, "nn.LSTM", "nn.LSTMCell"
    native_op = "LSTM"
    onnx_order = (0, 3, 1, 2)    # torch i, f, g, o -> ONNX i, o, f, c
    scan_order = (0, 1, 3, 2)    # i, f, o | g: the sigmoid gates first
    native_max_elements = 4096

    def torch_stack(self, spec):
        return nn.LSTM(spec.input_size, spec.hidden_size, spec.num_layers, batch_first=True,
                       bidirectional=spec.bidirectional)

    def torch_cell(self, spec):
        return nn.LSTMCell(spec.input_size, spec.hidden_size)

    def cell_loop(self, cell, head):
        return LSTMCellLoop(cell, head)

    def stream_module(self, model, spec):
        if spec.form == "stack":
            return LSTMStackStream(model, spec.num_layers)
        return LSTMCellLoopStream(model)

    def scan_step(self, b, p, states, consts, hidden):
        h, c = states                                                    # (H, batch) each
        gates = b.op("Gemm", [consts["r"], h, p])                        # (4H, batch)
        ifo, g = b.op("Split", [gates, b.ints(3 * hidden, hidden)], 2, axis=0)
        i, f, o = b.op("Split", [b.op("Sigmoid", [ifo])], 3, axis=0, num_outputs=3)
        c2 = b.op("Add", [b.op("Mul", [f, c]), b.op("Mul", [i, b.op("Tanh", [g])])])
        return [b.op("Mul", [o, b.op("Tanh", [c2])]), c2]


class LSTMCellLoop(CellLoop):
    """An nn.LSTMCell stepped in a loop, then a linear head on the last h."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs.new_zeros(inputs.size(0), self.hidden_size)   # (batch, hidden)
        c = inputs.new_zeros(inputs.size(0), self.hidden_size)
        for t in range(inputs.size(1)):
            h, c = self.rnn_cell(inputs[:, t], (h, c))
        return self.linear(h)


class LSTMStackStream(nn.Module):
    """forward(input, lengths, h_in, c_in) -> (output, h_out, c_out)."""

    def __init__(self, model: nn.Module, layers: int):
        super().__init__()
        self.rnn, self.fc, self.layers = model.rnn, model.fc, layers

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor,
                c_in: torch.Tensor):
        check_stream(input, lengths, h_in, self.layers, self.rnn.hidden_size)
        check_stream(input, lengths, c_in, self.layers, self.rnn.hidden_size)
        _, (h, c) = self.rnn(packed(input, lengths),
                             (to_layers(h_in, self.layers), to_layers(c_in, self.layers)))
        return self.fc(h[-1]), from_layers(h, self.layers), from_layers(c, self.layers)


class LSTMCellLoopStream(nn.Module):
    """forward(input, lengths, h_in, c_in): rows past their length keep their state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.rnn_cell, self.linear = model.rnn_cell, model.linear

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor,
                c_in: torch.Tensor):
        check_stream(input, lengths, h_in, 1, self.rnn_cell.hidden_size)
        check_stream(input, lengths, c_in, 1, self.rnn_cell.hidden_size)
        h, c = h_in, c_in
        for t in range(input.size(1)):
            h2, c2 = self.rnn_cell(input[:, t], (h, c))
            live = (lengths > t).unsqueeze(1)
            h, c = torch.where(live, h2, h), torch.where(live, c2, c)
        return self.linear(h), h, c


LSTM_FAMILY = LSTM()
