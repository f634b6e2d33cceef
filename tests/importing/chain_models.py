"""Users' own models written after designs people deploy, under attribute names the pipeline
never uses: the independent reference for `import --module` on chains of layers (issue 22).

    python -m pipeline import tagger --weights tagger.pt --task classification \
        --module tests.importing.chain_models:pos_tagger
"""
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence


class PosTagger(nn.Module):
    """The PyTorch tutorial's LSTM tagger: Embedding -> LSTM -> Linear per step -> log_softmax."""

    def __init__(self, vocab=50, dim=12, hidden=16, tags=5):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.hidden2tag = nn.Linear(hidden, tags)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds)
        return F.log_softmax(self.hidden2tag(lstm_out), dim=-1)


class CharLM(nn.Module):
    """Character language model: Embedding -> 2-layer GRU (dropout) -> Linear per step."""

    def __init__(self, chars=40, dim=16, hidden=24):
        super().__init__()
        self.encoder = nn.Embedding(chars, dim)
        self.rnn = nn.GRU(dim, hidden, num_layers=2, dropout=0.2, batch_first=True)
        self.decoder = nn.Linear(hidden, chars)

    def forward(self, ids):
        output, hidden = self.rnn(self.encoder(ids))
        return self.decoder(output)


class CRNNHead(nn.Module):
    """OCR sequence head: two blocks of (bidirectional LSTM -> Linear per step) -> Linear."""

    def __init__(self, features=20, hidden=12, classes=11):
        super().__init__()
        self.rnn1 = nn.LSTM(features, hidden, bidirectional=True, batch_first=True)
        self.emb1 = nn.Linear(2 * hidden, hidden)
        self.rnn2 = nn.LSTM(hidden, hidden, bidirectional=True, batch_first=True)
        self.emb2 = nn.Linear(2 * hidden, hidden)
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, visual):
        x, _ = self.rnn1(visual)
        x = self.emb1(x)
        x, _ = self.rnn2(x)
        return self.classifier(self.emb2(x))


class DeepARLike(nn.Module):
    """Linear + ReLU -> LayerNorm -> 2-layer LSTM -> Linear per step (mean and scale)."""

    def __init__(self, covariates=7, width=16, hidden=20):
        super().__init__()
        self.input_proj = nn.Sequential(nn.Linear(covariates, width), nn.ReLU())
        self.norm = nn.LayerNorm(width)
        self.lstm = nn.LSTM(width, hidden, num_layers=2, batch_first=True)
        self.distribution = nn.Linear(hidden, 2)

    def forward(self, past):
        z = self.norm(self.input_proj(past))
        out, _ = self.lstm(z)
        return self.distribution(out)


class Sentiment(nn.Module):
    """Embedding -> 2-layer biLSTM -> cat(h_n[-2], h_n[-1]) -> Dropout -> Linear."""

    def __init__(self, vocab=60, dim=10, hidden=14, classes=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.rnn = nn.LSTM(dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, text):
        _, (hidden, cell) = self.rnn(self.embedding(text))
        hidden = torch.cat((hidden[-2], hidden[-1]), dim=1)
        return self.fc(self.drop(hidden))


class PaddedClassifier(nn.Module):
    """forward(x, lengths): pack_padded_sequence(enforce_sorted=False) -> GRU -> h_n[-1] ->
    Linear, ReLU, Linear."""

    def __init__(self, features=6, hidden=18, classes=4):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)
        return self.mlp(h_n[-1])


class KeywordSpotter(nn.Module):
    """Per frame: LayerNorm -> GRU -> Linear per step -> softmax."""

    def __init__(self, mels=13, hidden=22, keywords=6):
        super().__init__()
        self.frontend_norm = nn.LayerNorm(mels)
        self.gru = nn.GRU(mels, hidden, batch_first=True)
        self.out = nn.Linear(hidden, keywords)

    def forward(self, frames):
        y, _ = self.gru(self.frontend_norm(frames))
        return torch.softmax(self.out(y), dim=-1)


class MeanPooled(nn.Module):
    """LSTM -> mean over time -> Linear (a regressor)."""

    def __init__(self, features=5, hidden=16):
        super().__init__()
        self.encoder = nn.LSTM(features, hidden, batch_first=True)
        self.regress = nn.Linear(hidden, 1)

    def forward(self, x):
        states, _ = self.encoder(x)
        return self.regress(states.mean(dim=1))


class EmbeddedCellLoop(nn.Module):
    """Embedding, then an nn.GRUCell stepped in a Python loop, then a Linear on the last h."""

    def __init__(self, vocab=30, dim=8, hidden=12, classes=3):
        super().__init__()
        self.lookup = nn.Embedding(vocab, dim)
        self.step = nn.GRUCell(dim, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens):
        e = self.lookup(tokens)
        h = torch.zeros(tokens.size(0), 12)
        for t in range(tokens.size(1)):
            h = self.step(e[:, t], h)
        return self.head(h)


# name -> (class, --task, input kind, per-step output, has a stream form, takes lengths)
CHAINS = {
    "tagger": (PosTagger, "classification", "tokens", True, True, False),
    "charlm": (CharLM, "classification", "tokens", True, True, False),
    "crnn": (CRNNHead, "classification", "features", True, False, False),
    "deepar": (DeepARLike, "regression", "features", True, True, False),
    "sentiment": (Sentiment, "classification", "tokens", False, False, False),
    "padded": (PaddedClassifier, "classification", "features", False, True, True),
    "kws": (KeywordSpotter, "classification", "features", True, True, False),
    "meanpool": (MeanPooled, "regression", "features", False, False, False),
    "embcell": (EmbeddedCellLoop, "classification", "tokens", False, True, False),
}


def factory(name):
    return CHAINS[name][0]


def chain_model(name: str, seed: int = 0) -> nn.Module:
    """The user's module with seeded weights (see seeded)."""
    return seeded(CHAINS[name][0], seed)


def seeded(cls, seed: int = 0) -> nn.Module:
    """cls() with seeded weights (recurrent weights doubled: not trivially contractive, as
    in user_models.py)."""
    torch.manual_seed(seed)
    model = cls()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "weight_hh" in key:
                p.mul_(2.0)
            if "norm" in key:             # a trained norm is not the identity
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


# factories, as `--module tests.importing.chain_models:<name>` calls them
pos_tagger, char_lm, crnn_head, deepar_like = PosTagger, CharLM, CRNNHead, DeepARLike
sentiment, padded_classifier, keyword_spotter = Sentiment, PaddedClassifier, KeywordSpotter
mean_pooled, embedded_cell_loop = MeanPooled, EmbeddedCellLoop
