"""Recurrent: one recurrent family's layers (pipeline/families) as one layer of a chain.

    Recurrent(cell="lstm", form="stack", inputs=16, hidden=64, layers=2, bidirectional=False)

(batch, seq, inputs) -> (batch, seq, directions x hidden), every step's top-layer output;
a Readout after it turns that into one row. `packed`: the user's forward ran it on a
pack_padded_sequence, so each row stops at its own length (the artifacts take `lengths`),
a backward direction starts at it, and its steps past it are zeros (pad_packed_sequence).
In a stream it carries its state: h (and c for an LSTM), (batch, [layers,] hidden) each.
Its ONNX nodes are the export stage's (pipeline/export/chain_graph.py), which writes the
recurrent operators for every family; its weights are the family's torch module's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

CELLS = ("rnn_tanh", "rnn_relu", "gru", "lstm")


@dataclass(frozen=True)
class Recurrent:
    cell: str
    form: str                  # "stack" (nn.RNN/GRU/LSTM) or "cell_loop" (a cell in a loop)
    inputs: int
    hidden: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False
    kind: str = "recurrent"
    per_step: ClassVar[bool] = True
    stateful: ClassVar[bool] = True

    def __post_init__(self):
        problems = [
            self.cell not in CELLS and f"cell {self.cell!r} is not one of {', '.join(CELLS)}",
            self.form not in ("stack", "cell_loop") and f"form {self.form!r}",
            self.layers < 1 and "layers must be >= 1",
            self.form == "cell_loop" and (self.layers != 1 or self.bidirectional or self.packed)
            and "a cell loop is one unidirectional, unpacked layer",
            min(self.inputs, self.hidden) < 1 and "sizes must be >= 1"]
        if any(problems):
            raise ValueError(f"recurrent: {next(p for p in problems if p)}")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def states(self) -> int:
        return 2 if self.cell == "lstm" else 1

    def out_width(self, width: int) -> int:
        return self.hidden * self.directions

    def family(self):
        from ..families import family
        return family(self.cell)

    def torch_rnn(self):
        """The family's own torch module (nn.GRU(batch_first=True), nn.LSTMCell, ...)."""
        from ..specs import ModelSpec
        spec = ModelSpec("layer", "regression", self.inputs, self.hidden, 1, cell=self.cell,
                         form=self.form, num_layers=self.layers, bidirectional=self.bidirectional)
        fam = self.family()
        return fam.torch_stack(spec) if self.form == "stack" else fam.torch_cell(spec)

    def torch_module(self, first_state: int = 0):
        from .modules import recurrent_module
        return recurrent_module(self, self.torch_rnn(), first_state)

    def flops(self) -> int:
        """Multiply-adds x 2 per step, every layer and direction."""
        gates = self.family().gates
        total, width = 0, self.inputs
        for _ in range(self.layers):
            total += 2 * gates * self.hidden * (width + self.hidden) * self.directions
            width = self.hidden * self.directions
        return total

    def describe(self) -> str:
        fam = self.family()
        detail = f", {self.cell[4:]}" if self.cell.startswith("rnn_") else ""
        if self.form == "cell_loop":
            return f"`{fam.cell_name}` ({self.inputs} -> {self.hidden}{detail}) stepped over " \
                   "the sequence"
        layers = f", {self.layers} layers" if self.layers > 1 else ""
        both = ", bidirectional" if self.bidirectional else ""
        packed = ", on each row's own length (packed)" if self.packed else ""
        return f"`{fam.stack_name}(batch_first=True)` ({self.inputs} -> {self.hidden}{detail}" \
               f"{layers}{both}{packed})"
