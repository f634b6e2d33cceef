"""`import --module` reading a forward: what is refused (one line naming what and where,
nothing written) and the cases of one layer kind in several spellings."""
import re

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn import functional as F

from pipeline.cli import cli
from pipeline.importing import ImportConfig, ImportRefused, main
from pipeline.importing.trace import read_chain

from .chain_refusals import REFUSALS


@pytest.mark.parametrize("name", REFUSALS)
def test_each_refusal_is_one_located_line_and_writes_nothing(tmp_path, name):
    cls, message = REFUSALS[name]
    path = tmp_path / f"{name}.pt"
    torch.save(cls().state_dict(), path)
    out = tmp_path / "out"
    with pytest.raises(ImportRefused, match=re.escape(message)) as caught:
        main(ImportConfig(name, path, "classification", out=out,
                          module=f"tests.importing.chain_refusals:{cls.__name__}"))
    assert "\n" not in str(caught.value)
    if name == "branching":                       # fx's own refusal, located in the source
        assert "chain_refusals.py:" in str(caught.value)
    assert not out.exists() or not any(out.iterdir())


def test_cli_refuses_in_one_line(tmp_path):
    cls, message = REFUSALS["attention"]
    path = tmp_path / "a.pt"
    torch.save(cls().state_dict(), path)
    result = CliRunner().invoke(cli, ["import", "attn", "--weights", str(path), "--task",
                                      "classification", "--out", str(tmp_path / "out"),
                                      "--module", "tests.importing.chain_refusals:Attention"])
    assert result.exit_code != 0
    assert result.output.strip().count("\n") == 0 and message in result.output


class Spellings(nn.Module):
    """Functional and method spellings of the layers the chain reads."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.GELU(approximate="tanh"))
        self.rnn = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.dropout(F.leaky_relu(self.body(x), 0.2), p=0.1, training=self.training)
        out, (h, c) = self.rnn(x)
        y = self.fc(out.max(dim=1).values).tanh()
        return F.log_softmax(y, dim=-1)


def test_spellings_read_as_the_same_kinds():
    traced = read_chain(Spellings().eval())
    words = [(layer.kind, getattr(layer, "fn", getattr(layer, "how", None)))
             for layer in traced.layers]
    assert words == [("linear", None), ("activation", "gelu_tanh"),
                     ("activation", "leaky_relu"), ("dropout", None), ("recurrent", None),
                     ("readout", "max"), ("linear", None), ("activation", "tanh"),
                     ("activation", "log_softmax")]
    assert traced.layers[2].alpha == pytest.approx(0.2)
    assert traced.prefixes == {0: "body.0", 4: "rnn", 6: "fc"}
