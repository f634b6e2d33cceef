"""Users' own recurrent models, written as a user would, under attribute names the pipeline
never uses. They are the independent reference for `import` and everything after it: each
exported artifact must compute what these forwards compute.

    python -m pipeline import churn --weights churn.pt --task classification \
        --module tests.importing.user_models:churn_lstm
"""
import torch
from torch import nn


class ChurnLSTM(nn.Module):
    """nn.LSTM(16, 64, num_layers=2) classifier, the issue's example."""

    def __init__(self):
        super().__init__()
        self.body = nn.LSTM(16, 64, num_layers=2, batch_first=True)
        self.decision = nn.Linear(64, 3)

    def forward(self, x):
        out, _ = self.body(x)
        return self.decision(out[:, -1])


class SensorGRU(nn.Module):
    """A GRU forecaster."""

    def __init__(self):
        super().__init__()
        self.temporal = nn.GRU(6, 32, batch_first=True)
        self.readout = nn.Linear(32, 2)

    def forward(self, series):
        states, _ = self.temporal(series)
        return self.readout(states[:, -1, :])


class ReluStack(nn.Module):
    """A 2-layer ReLU nn.RNN regressor."""

    def __init__(self):
        super().__init__()
        self.core = nn.RNN(4, 24, num_layers=2, nonlinearity="relu", batch_first=True)
        self.proj = nn.Linear(24, 1)

    def forward(self, x):
        return self.proj(self.core(x)[0][:, -1])


class BiGRU(nn.Module):
    """A bidirectional GRU classifier: the head reads both directions at the last step."""

    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(5, 16, bidirectional=True, batch_first=True)
        self.cls = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.enc(x)
        return self.cls(out[:, -1, :])


class StepLSTM(nn.Module):
    """An nn.LSTMCell stepped in a Python loop, written the user's way."""

    def __init__(self):
        super().__init__()
        self.unit = nn.LSTMCell(7, 20)
        self.out_layer = nn.Linear(20, 2)

    def forward(self, x):
        h = torch.zeros(x.size(0), 20)
        c = torch.zeros(x.size(0), 20)
        for t in range(x.size(1)):
            h, c = self.unit(x[:, t, :], (h, c))
        return self.out_layer(h)


class MeanPoolLSTM(ChurnLSTM):
    """Same weights as ChurnLSTM, but its head reads the mean over time: not importable."""

    def forward(self, x):
        out, _ = self.body(x)
        return self.decision(out.mean(dim=1))


class ScaledLSTM(ChurnLSTM):
    """Same weights as ChurnLSTM, its logits doubled: arithmetic the chain does not hold."""

    def forward(self, x):
        out, _ = self.body(x)
        return self.decision(out[:, -1]) * 2


class TupleLSTM(ChurnLSTM):
    def forward(self, x):
        out, state = self.body(x)
        return self.decision(out[:, -1]), state


# name -> (factory, task, features); factories are what `import --module` calls
def churn_lstm():
    return ChurnLSTM()


def sensor_gru():
    return SensorGRU()


def relu_stack():
    return ReluStack()


def bi_gru():
    return BiGRU()


def step_lstm():
    return StepLSTM()


def mean_pool_lstm():
    return MeanPoolLSTM()


def scaled_lstm():
    return ScaledLSTM()


def tuple_lstm():
    return TupleLSTM()


USERS = {   # name -> (factory, --task, expected (cell, form, layers, bidirectional))
    "churn": (churn_lstm, "classification", ("lstm", "stack", 2, False)),
    "sensor": (sensor_gru, "regression", ("gru", "stack", 1, False)),
    "relu2": (relu_stack, "regression", ("rnn_relu", "stack", 2, False)),
    "bigru": (bi_gru, "classification", ("gru", "stack", 1, True)),
    "steps": (step_lstm, "regression", ("lstm", "cell_loop", 1, False)),
}


def user_model(name: str, seed: int = 0) -> nn.Module:
    """The user's module with seeded weights; a saturating cell's recurrent weights are
    doubled so the recurrence is not trivially contractive (default inits give outputs
    near the head's bias). A relu RNN keeps torch's init: doubled, it grows without bound
    over the 300-step stream checks, as no trained relu RNN does."""
    torch.manual_seed(seed)
    model = USERS[name][0]()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "weight_hh" in key and USERS[name][2][0] != "rnn_relu":
                p.mul_(2.0)
    return model.eval()
