"""Users' modules for the precision tests: a 2-layer LSTM, and the same network built to
break int8 (one very large weight in every row, on a hidden unit whose output is always
zero, so float32 computes the same function while per-row int8 scales round every other
weight of the row to 0). The outlier sits inside each row, so per-row (per-channel) scales
do not rescue it, and in both the recurrent weights (which the int8 file quantizes) and the
input weights (which only the every-product form, quantize(inputs=True), does)."""
import torch
from torch import nn

HIDDEN, FEATURES, CLASSES = 32, 8, 3


class TwoLayerLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def lstm2(seed: int = 0) -> TwoLayerLSTM:
    torch.manual_seed(seed)
    model = TwoLayerLSTM()
    with torch.no_grad():                # a recurrence that is not trivially contractive
        for name, p in model.lstm.named_parameters():
            if "weight_hh" in name:
                p.mul_(2.0)
    return model.eval()


def broken_lstm(seed: int = 0, big: float = 100.0) -> TwoLayerLSTM:
    """Layer 1's hidden unit 0 never speaks: its output gate is shut (bias -1e4, sigmoid 0)
    and its g gate is 0, so its h is 0 at every step whatever the state. Every row of layer
    1's recurrent weights and of layer 2's input weights then gets `big` on that unit:
    float32 multiplies it by 0, but the per-row int8 scale (big / 127) rounds every other
    weight of those rows to 0 (layer 1 loses its recurrence, layer 2 its input)."""
    model = lstm2(seed)
    H = HIDDEN
    with torch.no_grad():
        for k in (2, 3):                                # unit 0's g and o rows, layer 1
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(model.lstm, name)[k * H] = 0.0
        model.lstm.bias_ih_l0[3 * H] = -1e4             # o = sigmoid(-1e4) = 0
        model.lstm.weight_hh_l0[:, 0] = big             # h_0 is 0: exact in float32
        model.lstm.weight_ih_l1[:, 0] = big
    return model.eval()
