"""The eager, TorchScript-able torch modules of a chain's layers, all with one call shape:

    forward(x, lengths) -> y                  the model (lengths: each row's valid steps;
                                              every row full when the forward takes none)
    stream(x, lengths, states) -> (y, states) the stream form: a recurrent layer reads and
                                              replaces its own entries of the state list

so the chain (pipeline/network.py) runs `for layer in self.layers` under TorchScript.
Recurrent layers keep the family's torch module as `rnn` (nn.GRU, nn.LSTMCell, ...) and the
others the torch.nn module as `inner`, so a user's weights load by renaming prefixes.
"""
from __future__ import annotations

from typing import List, Tuple

import torch      # torch modules: imported only where a chain's model is built
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..families.base import from_layers, to_layers


def at_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (B, S, W) at each row's last valid step (lengths - 1): (B, W)."""
    idx = (lengths - 1).to(x.device).view(-1, 1, 1).expand(-1, 1, x.size(2))
    return x.gather(1, idx).squeeze(1)


class Step(nn.Module):
    """A stateless layer (Embedding, Linear, LayerNorm, Dropout, an activation)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.inner(x), states


class ReadoutModule(nn.Module):
    """(B, S, W) -> (B, W'); see pipeline/layers/readout.py for each `how`."""

    def __init__(self, how: str, hidden: int, directions: int):
        super().__init__()
        self.how, self.hidden, self.directions = how, hidden, directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.how == "mean":
            return x.mean(1)
        if self.how == "max":
            return x.amax(1)
        if self.how == "last_step" or self.directions == 1:
            return at_lengths(x, lengths)
        back = x[:, 0, self.hidden:]          # the backward direction ends at step 0
        if self.how == "final_state":
            return back
        return torch.cat([at_lengths(x, lengths)[:, :self.hidden], back], dim=1)

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return self.forward(x, lengths), states


class StackLayer(nn.Module):
    """nn.RNN / nn.GRU (one state, h) -> every step's top-layer output (B, S, D*H)."""

    def __init__(self, rnn: nn.Module, packed: bool, first: int):
        super().__init__()
        self.rnn, self.packed, self.first = rnn, packed, first
        self.layers = rnn.num_layers

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return self.rnn(x)[0]
        out = self.rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                            enforce_sorted=False))[0]
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(seq, to_layers(states[self.first], self.layers))
        new = [s for s in states]
        new[self.first] = from_layers(h, self.layers)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0], new


class LSTMStackLayer(StackLayer):
    """nn.LSTM: states h and c."""

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(seq, (to_layers(states[self.first], self.layers),
                                     to_layers(states[self.first + 1], self.layers)))
        new = [s for s in states]
        new[self.first] = from_layers(h, self.layers)
        new[self.first + 1] = from_layers(c, self.layers)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0], new


class CellLoopLayer(nn.Module):
    """nn.RNNCell / nn.GRUCell stepped over the sequence; every step's h (B, S, H)."""

    def __init__(self, rnn: nn.Module, first: int):
        super().__init__()
        self.rnn, self.first, self.hidden = rnn, first, rnn.hidden_size

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), self.hidden)
        outs = []
        for t in range(x.size(1)):
            h = self.rnn(x[:, t], h)
            outs.append(h)
        return torch.stack(outs, 1)

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        h = states[self.first]
        outs = []
        for t in range(x.size(1)):      # rows past their length keep their state
            h = torch.where((lengths > t).to(x.device).unsqueeze(1), self.rnn(x[:, t], h), h)
            outs.append(h)
        new = [s for s in states]
        new[self.first] = h
        return torch.stack(outs, 1), new


class LSTMCellLoopLayer(CellLoopLayer):
    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), self.hidden)
        c = x.new_zeros(x.size(0), self.hidden)
        outs = []
        for t in range(x.size(1)):
            h, c = self.rnn(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, 1)

    def stream(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        h, c = states[self.first], states[self.first + 1]
        outs = []
        for t in range(x.size(1)):
            h2, c2 = self.rnn(x[:, t], (h, c))
            live = (lengths > t).to(x.device).unsqueeze(1)
            h, c = torch.where(live, h2, h), torch.where(live, c2, c)
            outs.append(h)
        new = [s for s in states]
        new[self.first] = h
        new[self.first + 1] = c
        return torch.stack(outs, 1), new


def recurrent_module(layer, rnn: nn.Module, first: int) -> nn.Module:
    """The module of a Recurrent layer around its family's torch module; its states are
    entries first.. of a stream's state list."""
    lstm = layer.cell == "lstm"
    if layer.form == "cell_loop":
        return (LSTMCellLoopLayer if lstm else CellLoopLayer)(rnn, first)
    return (LSTMStackLayer if lstm else StackLayer)(rnn, layer.packed, first)
