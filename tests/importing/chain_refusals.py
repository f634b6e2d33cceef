"""Users' modules the chain cannot express: each import must be refused in one line that
names what and where (this file's line), and write nothing."""
import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        ctx, _ = self.attn(out, out, out)
        return self.fc(ctx[:, -1])


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        y = x + self.proj(x)
        out, _ = self.rnn(y)
        return self.fc(out[:, -1])


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        if out.sum() > 0:
            return self.fc(out[:, -1])
        return self.fc(out[:, 0])


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        out, h = self.rnn(x)
        return self.fc(out[:, -1]), h


class Convolution(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return self.fc(out[:, -1])


class FirstStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, 0])


class InitialState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        h0 = torch.ones(1, x.size(0), 16)
        out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1])


# name -> (class, what the one line must say)
REFUSALS = {
    "attention": (Attention, "MultiheadAttention (attn) is not a layer kind"),
    "residual": (Residual, "a residual add (x + ...) at chain_refusals.py:"),
    "branching": (Branching, "depends on the values or the sizes of its input"),
    "two_outputs": (TwoOutputs, "forward returns tuple of 2 values (the pipeline exports one output tensor) at chain_refusals.py:54"),
    "conv": (Convolution, "transpose"),
    "first_step": (FirstStep, "indexing [:, 0] of a seq value"),
    "initial_state": (InitialState, "called with an initial state"),
}
