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

from tests.importing.chain_models import seeded


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


class PackedGRULast(nn.Module):
    """Classifier on padded batches, each row's last valid step read from the padded output
    with the lengths pad_packed_sequence returns: Embedding -> pack -> 2-layer GRU ->
    out[torch.arange(out.size(0)), out_lens - 1] -> Linear."""

    def __init__(self, vocab=40, dim=8, hidden=12, classes=4):
        super().__init__()
        self.lookup = nn.Embedding(vocab, dim)
        self.gru2 = nn.GRU(dim, hidden, num_layers=2, batch_first=True)
        self.decide = nn.Linear(hidden, classes)

    def forward(self, ids, lens):
        packed = pack_padded_sequence(self.lookup(ids), lens.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.gru2(packed)
        out, out_lens = pad_packed_sequence(out, batch_first=True)
        return self.decide(out[torch.arange(out.size(0)), out_lens - 1])


class PackedLSTMLastOwnLengths(nn.Module):
    """Regressor: pack -> LSTM -> pad_packed_sequence(total_length) -> Linear, Tanh per step
    -> each row's last valid step with the forward's own lengths -> Linear."""

    def __init__(self, feats=6, hidden=11):
        super().__init__()
        self.lstm = nn.LSTM(feats, hidden, batch_first=True)
        self.per_step = nn.Sequential(nn.Linear(hidden, 9), nn.Tanh())
        self.head = nn.Linear(9, 2)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        steps = self.per_step(out)
        return self.head(steps[torch.arange(len(lengths)), lengths - 1])


class PackedGRUGather(nn.Module):
    """Classifier: pack -> GRU -> pad_packed_sequence -> out.gather at lengths - 1 (the
    common gather form) -> Linear, ReLU, Linear."""

    def __init__(self, feats=5, hidden=13, classes=3):
        super().__init__()
        self.rnn = nn.GRU(feats, hidden, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, 10), nn.ReLU(), nn.Linear(10, classes))

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                               enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True)
        idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.size(2))
        return self.mlp(out.gather(1, idx).squeeze(1))


class PackedBiLSTMLast(nn.Module):
    """Bidirectional: each row's last valid step of the padded output, i.e. the forward
    direction's final state beside the backward direction's output after that one step
    (not cat(h_n[-2], h_n[-1]), but what this forward computes) -> Linear."""

    def __init__(self, vocab=30, dim=7, hidden=9, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.bi = nn.LSTM(dim, hidden, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, ids, lens):
        out, _ = self.bi(pack_padded_sequence(self.emb(ids), lens.cpu(), batch_first=True,
                                              enforce_sorted=False))
        out, out_lens = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))
        return self.fc(out[torch.arange(out.shape[0], device=out.device), out_lens - 1, :])


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
    "plast": (PackedGRULast, "classification", "tokens", False, True, True),
    "plastlen": (PackedLSTMLastOwnLengths, "regression", "features", False, True, True),
    "pgather": (PackedGRUGather, "classification", "features", False, True, True),
    "pbilast": (PackedBiLSTMLast, "classification", "tokens", False, False, True),
}


def packed_model(name: str, seed: int = 0) -> nn.Module:
    """The user's module with seeded weights, as chain_models.py seeds them."""
    return seeded(PACKED[name][0], seed)


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


class UnpackedLast(nn.Module):
    """Refused: each row's last valid step of a layer run on the padded batch (no
    pack_padded_sequence: the artifacts take no lengths)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(x)
        return self.fc(out[torch.arange(out.size(0)), lengths - 1])


class PackedSecondToLast(nn.Module):
    """Refused: each row's step before its last valid one."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, _ = self.rnn(pack_padded_sequence(x, lengths, batch_first=True,
                                               enforce_sorted=False))
        out, out_lengths = pad_packed_sequence(out, batch_first=True)
        return self.fc(out[torch.arange(out.size(0)), out_lengths - 2])


# name -> (class, what the one line must say)
PACKED_REFUSALS = {
    "unpacked_last": (UnpackedLast, "out[torch.arange(B), lengths - 1] of a layer that is not "
                                    "packed (the artifacts take lengths for "
                                    "pack_padded_sequence only) at packed_models.py:"),
    "second_to_last": (PackedSecondToLast, "lengths - 2 (the chain reads each row's last valid "
                                           "step, lengths - 1) at packed_models.py:"),
    "packed_mean": (PackedMean, ".mean() of pad_packed_sequence's output, packed_models.py:"),
    "fixed_length": (PackedFixedLength, "pad_packed_sequence(total_length=50); give "
                                        "total_length=x.size(1) or none"),
    "pad_value": (PackedPadValue, "pad_packed_sequence with padding_value=-1.0 (zeros only) "
                                  "at packed_models.py:"),
}
