"""The seed documents' model classes, verbatim (../shared/seeds/000_*, 001_*).

They are the independent reference: our models must load their weights and agree with them.
Renamed only to tell them apart (both seeds call theirs SimpleRNN).
"""
import torch
import torch.nn as nn


class SeedForecaster(nn.Module):  # seed 000
    def __init__(self, input_size, hidden_size, output_size):
        super(SeedForecaster, self).__init__()
        self.hidden_size = hidden_size
        self.rnn_cell = nn.RNNCell(input_size, hidden_size)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, inputs):
        batch_size = inputs.size(0)
        hidden_state = torch.zeros(batch_size, self.hidden_size)
        for input_t in inputs.chunk(inputs.size(1), dim=1):
            hidden_state = self.rnn_cell(input_t.squeeze(1), hidden_state)
        output = self.linear(hidden_state)
        return output


class SeedClassifier(nn.Module):  # seed 001
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        # x: (batch_size, seq_len, input_size)
        out, h_n = self.rnn(x)  # out: (batch_size, seq_len, hidden_size)
        out = out[:, -1, :]     # Take the output at the last time step
        out = self.fc(out)      # (batch_size, output_size)
        return out


SEED_CLASSES = {"forecaster": SeedForecaster, "classifier": SeedClassifier}


def seed_model(spec):
    """A seed-class instance with the spec's sizes."""
    return SEED_CLASSES[spec.name](spec.input_size, spec.hidden_size, spec.output_size)
