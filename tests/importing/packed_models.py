"""Users' packed and deep recurrent models, written as people write them, under attribute
names the pipeline never uses: the independent reference for `import --module` on packed
per-step outputs, packed bidirectional layers and streams of more than 4 states (issue 22).

    python -m pipeline import ptagger --weights ptagger.pt --task classification \
        --module tests.importing.packed_models:PackedGRUTagger
"""
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class PackedGRUTagger(nn.Module):
    """Token tagger on padded batches: Embedding -> pack -> GRU -> pad_packed_sequence
    (total_length) -> Linear per step -> log_softmax."""

    def __init__(self, vocab=45, dim=10, hidden=14, tags=6):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim, padding_idx=0)
        self.encoder = nn.GRU(dim, hidden, batch_first=True)
        self.emit = nn.Linear(hidden, tags)

    def forward(self, ids, lens):
        packed = pack_padded_sequence(self.tok(ids), lens.cpu(), batch_first=True,
                                      enforce_sorted=False)
        seq_out, _ = self.encoder(packed)
        unpacked, _ = pad_packed_sequence(seq_out, batch_first=True, total_length=ids.size(1))
        return F.log_softmax(self.emit(unpacked), dim=-1)


class PackedLSTMFrames(nn.Module):
    """Frame regressor: pack -> 2-layer LSTM -> pad_packed_sequence (no total_length: torch
    gives max(lengths) steps) -> Linear, ReLU, Linear per step."""

    def __init__(self, feats=5, hidden=12):
        super().__init__()
        self.body = nn.LSTM(feats, hidden, num_layers=2, batch_first=True)
        self.post = nn.Sequential(nn.Linear(hidden, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, frames, n_valid):
        packed = pack_padded_sequence(frames, n_valid, batch_first=True, enforce_sorted=False)
        res, _ = self.body(packed)
        res, _ = pad_packed_sequence(res, batch_first=True)
        return self.post(res)


class PackedBiLSTMClassifier(nn.Module):
    """Sentiment on padded batches: Embedding -> pack -> 2-layer biLSTM ->
    cat(h_n[-2], h_n[-1]) -> Linear."""

    def __init__(self, vocab=55, dim=9, hidden=11, classes=3):
        super().__init__()
        self.words = nn.Embedding(vocab, dim)
        self.birnn = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.cls = nn.Linear(2 * hidden, classes)

    def forward(self, text, text_lengths):
        packed = pack_padded_sequence(self.words(text), text_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, (hid, _) = self.birnn(packed)
        return self.cls(torch.cat((hid[-2], hid[-1]), dim=1))


class PackedBiGRUTagger(nn.Module):
    """Per-step tagger on padded features: pack -> biGRU -> pad_packed_sequence
    (total_length) -> Linear per step."""

    def __init__(self, feats=7, hidden=10, tags=4):
        super().__init__()
        self.bigru = nn.GRU(feats, hidden, bidirectional=True, batch_first=True)
        self.proj = nn.Linear(2 * hidden, tags)

    def forward(self, feats, lengths):
        packed = pack_padded_sequence(feats, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        both, _ = self.bigru(packed)
        both, _ = pad_packed_sequence(both, batch_first=True, total_length=feats.shape[1])
        return self.proj(both)


class ThreeLSTMs(nn.Module):
    """Three LSTM blocks (6 state tensors in a stream), LayerNorm between, Linear per step."""

    def __init__(self, feats=6, hidden=10):
        super().__init__()
        self.block_a = nn.LSTM(feats, hidden, batch_first=True)
        self.block_b = nn.LSTM(hidden, hidden, batch_first=True)
        self.mid_norm = nn.LayerNorm(hidden)
        self.block_c = nn.LSTM(hidden, 9, batch_first=True)
        self.out = nn.Linear(9, 3)

    def forward(self, x):
        a, _ = self.block_a(x)
        b, _ = self.block_b(a)
        c, _ = self.block_c(self.mid_norm(b))
        return self.out(c)


# name -> (class, --task, input kind, per-step output, has a stream form, takes lengths)
PACKED = {
    "ptagger": (PackedGRUTagger, "classification", "tokens", True, True, True),
    "pframes": (PackedLSTMFrames, "regression", "features", True, True, True),
    "pbilstm": (PackedBiLSTMClassifier, "classification", "tokens", False, False, True),
    "pbigru": (PackedBiGRUTagger, "classification", "features", True, False, True),
    "lstm3": (ThreeLSTMs, "regression", "features", True, True, False),
}


def packed_model(name: str, seed: int = 0) -> nn.Module:
    """The user's module with seeded weights (recurrent weights doubled: not trivially
    contractive, as in chain_models.py)."""
    torch.manual_seed(seed)
    model = PACKED[name][0]()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "weight_hh" in key:
                p.mul_(2.0)
            if "norm" in key:             # a trained norm is not the identity
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


class PackedMean(nn.Module):
    """Refused: the mean over a pad_packed_sequence output counts each shorter row's zeros."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True)
        return self.fc(out.mean(1))


class PackedFixedLength(nn.Module):
    """Refused: a constant total_length (the artifacts give as many steps as the input)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=50)
        return self.fc(out)


class PackedPadValue(nn.Module):
    """Refused: padding_value other than zero."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, padding_value=-1.0)
        return self.fc(out)


class PackedGatherLast(nn.Module):
    """Refused: each row's last valid step gathered with pad_packed_sequence's lengths."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False))
        out, out_lengths = pad_packed_sequence(out, batch_first=True)
        idx = (out_lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.fc(out.gather(1, idx).squeeze(1))


# name -> (class, what the one line must say)
PACKED_REFUSALS = {
    "gather_last": (PackedGatherLast, "the lengths returned by pad_packed_sequence (to gather "
                                      "each row's last valid step, read h_n[-1] instead) at "
                                      "packed_models.py:"),
    "packed_mean": (PackedMean, ".mean() of pad_packed_sequence's output, packed_models.py:"),
    "fixed_length": (PackedFixedLength, "pad_packed_sequence(total_length=50); give "
                                        "total_length=x.size(1) or none"),
    "pad_value": (PackedPadValue, "pad_packed_sequence with padding_value=-1.0 (zeros only) "
                                  "at packed_models.py:"),
}
