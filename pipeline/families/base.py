"""What every recurrent family is, and what the families with one state tensor (h) share.

A `Family` (one per cell: rnn.py, gru.py, lstm.py) knows
  - its torch modules: the layer stack (nn.RNN/GRU/LSTM) and the cell (nn.RNNCell/...),
  - its gates per hidden unit (1, 3, 4: how `import` tells the cell from a state dict),
  - its state tensors (h; h and c for an LSTM),
  - its ONNX translation: the native operator (RNN/GRU/LSTM, gates reordered to ONNX's
    order) and the body of a `Scan` step made of plain ops (Gemm, Sigmoid, Tanh, Mul, ...),
  - how large a batch x hidden the native operator stays faster than the Scan (measured),
  - its sentence on the model card.
The graph around those pieces (layers, directions, the If between the two forms, the
stream gather) is the export stage's (pipeline/export/onnx_graph.py), the same for all.

Canonical eager modules (what `build_model` returns) keep the seeds' attribute names, so a
seed's weights load verbatim into the seed documents' classes: a stack is `rnn` + `fc`, a
cell loop `rnn_cell` + `linear`. Imported state dicts are renamed to these at import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch      # the families are torch modules: imported only where models are built
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from .graph import GraphBuilder

# form -> (recurrent module attribute, head attribute): the seeds' own names
MODULE_NAMES = {"stack": ("rnn", "fc"), "cell_loop": ("rnn_cell", "linear")}


@dataclass(frozen=True)
class Weights:
    """One layer, one direction, in torch's gate order (rows of G blocks of H)."""
    w_ih: np.ndarray        # (G*H, F_in)
    w_hh: np.ndarray        # (G*H, H)
    b_ih: np.ndarray        # (G*H,)
    b_hh: np.ndarray        # (G*H,)

    def gates(self, order) -> Weights:
        """The same weights with the gate blocks in `order` (indices into torch's order)."""
        def pick(a):
            blocks = np.split(a, len(order), axis=0)
            return np.concatenate([blocks[i] for i in order], axis=0)
        return Weights(pick(self.w_ih), pick(self.w_hh), pick(self.b_ih), pick(self.b_hh))


class Family:
    """The interface; subclasses set the class attributes and write `scan_step`."""
    cell: str = ""               # ModelSpec.cell
    gates: int = 1               # gate blocks per hidden unit in weight_ih / weight_hh
    states: int = 1              # state tensors: 1 (h) or 2 (h, c)
    stack_name: str = ""         # "nn.RNN", for messages and the card
    cell_name: str = ""          # "nn.RNNCell"
    native_op: str | None = None     # ONNX operator computing a whole layer, if portable
    onnx_order: tuple[int, ...] = (0,)   # torch gate blocks in the native operator's order
    scan_order: tuple[int, ...] = (0,)   # torch gate blocks in the Scan step's order
    # model.onnx runs the native operator while batch x hidden <= this, else the Scan (0:
    # always the Scan). Measured per family; the figures are in each module's docstring.
    native_max_elements: int = 0

    def native_batch_limit(self, hidden: int) -> int:
        """The largest batch that runs the native operator (0: the Scan at every batch);
        batch 1 always does when there is one (its per-call cost is the lowest)."""
        return max(1, self.native_max_elements // hidden) if self.native_op else 0

    # torch -------------------------------------------------------------------------------
    def torch_stack(self, spec: ModelSpec):
        raise NotImplementedError

    def torch_cell(self, spec: ModelSpec):
        raise NotImplementedError

    def cell_loop(self, cell, head):
        """The eager cell-loop module (TorchScript-able) around a cell and a head."""
        return CellLoop(cell, head)

    def stream_module(self, model, spec: ModelSpec):
        """The TorchScript stream form: forward(input, lengths, *states) -> (output, *states)."""
        if spec.form == "stack":
            return StackStream(model, spec.num_layers)
        return CellLoopStream(model)

    # ONNX ----------------------------------------------------------------------------------
    def native_attrs(self, hidden: int) -> dict:
        return {"hidden_size": hidden}

    def scan_weights(self, w: Weights) -> tuple[np.ndarray, dict]:
        """(w_aug, constants): the input projection [W_ih | bias] (G*H, F_in + 1) in the Scan
        order, hoisted out of the loop into one MatMul, and what the step needs besides."""
        w = w.gates(self.scan_order)
        return np.concatenate([w.w_ih, (w.b_ih + w.b_hh)[:, None]], axis=1), {"r": w.w_hh}

    def scan_step(self, b: GraphBuilder, p: str, states: list[str], consts: dict,
                  hidden: int) -> list[str]:
        """One step, feature-major: p (G*H, batch) = the projected input with its bias,
        states [(H, batch)...] -> new states. `consts`: scan_weights' constants, now
        initializer names."""
        raise NotImplementedError

    # model card ----------------------------------------------------------------------------
    def describe(self, spec: ModelSpec) -> str:
        """One sentence on the network, from the spec (the model card's "Network:")."""
        f, h, o = spec.input_size, spec.hidden_size, spec.output_size
        if spec.form == "cell_loop":
            return (f"`{self.cell_name}` ({f} -> {h}{self.detail()}) stepped over the sequence, "
                    f"then a linear head on the last hidden state ({h} -> {o})")
        layers = f", {spec.num_layers} layers" if spec.num_layers > 1 else ""
        both = ", bidirectional" if spec.bidirectional else ""
        return (f"`{self.stack_name}(batch_first=True)` ({f} -> {h}{self.detail()}{layers}{both}); "
                f"the last step's {'top-layer ' if layers else ''}output"
                f"{' (both directions)' if both else ''} feeds a linear head "
                f"({h * spec.directions} -> {o})")

    def detail(self) -> str:
        return ""


# --- eager and TorchScript modules of the families with one state (h) ---------------------


class Stack(nn.Module):
    """nn.RNN/GRU/LSTM(batch_first=True); the last step's output feeds a linear head (seed 001)."""

    def __init__(self, rnn: nn.Module, fc: nn.Linear):
        super().__init__()
        self.rnn, self.fc = rnn, fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)           # (batch, seq, directions * hidden); zero state
        return self.fc(out[:, -1, :])  # (batch, outputs)


class CellLoop(nn.Module):
    """An nn.RNNCell / GRUCell stepped in a loop, then a linear head (seed 000)."""

    def __init__(self, rnn_cell: nn.Module, linear: nn.Linear):
        super().__init__()
        self.hidden_size = rnn_cell.hidden_size
        self.rnn_cell, self.linear = rnn_cell, linear

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # inputs: (batch, seq, features); the zero state follows the input's device and dtype
        hidden = inputs.new_zeros(inputs.size(0), self.hidden_size)  # (batch, hidden)
        for t in range(inputs.size(1)):
            hidden = self.rnn_cell(inputs[:, t], hidden)
        return self.linear(hidden)  # (batch, output)


def check_stream(x: torch.Tensor, lengths: torch.Tensor, state: torch.Tensor, layers: int,
                 hidden: int) -> None:
    """The stream input contract, raised inside TorchScript too (a served model refuses)."""
    if x.dim() != 3 or x.size(1) < 1:
        raise ValueError("input must be (batch, seq >= 1, features)")
    if lengths.dim() != 1 or lengths.size(0) != x.size(0):
        raise ValueError("lengths must be (batch,), one length per input row")
    want = [x.size(0), hidden] if layers == 1 else [x.size(0), layers, hidden]
    if list(state.shape) != want:
        raise ValueError("state must be (batch, hidden), or (batch, layers, hidden) for "
                         "several layers; batch as the input's")
    if bool((lengths < 1).any()) or bool((lengths > x.size(1)).any()):
        raise ValueError("every length must be in 1..seq")


def to_layers(state: torch.Tensor, layers: int) -> torch.Tensor:
    """(batch, [layers,] H) -> torch's (layers, batch, H)."""
    if layers == 1:
        return state.unsqueeze(0).contiguous()
    return state.transpose(0, 1).contiguous()


def from_layers(state: torch.Tensor, layers: int) -> torch.Tensor:
    """torch's (layers, batch, H) -> (batch, [layers,] H)."""
    if layers == 1:
        return state.squeeze(0)
    return state.transpose(0, 1).contiguous()


def packed(x: torch.Tensor, lengths: torch.Tensor):
    """Rows of their own lengths: the stack stops each row at its last valid step, so its
    final state (every layer) is that row's; padding is never read."""
    return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)


class StackStream(nn.Module):
    """Stream form of a one-state stack: forward(input, lengths, h_in) -> (output, h_out)."""

    def __init__(self, model: nn.Module, layers: int):
        super().__init__()
        self.rnn, self.fc, self.layers = model.rnn, model.fc, layers

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor):
        check_stream(input, lengths, h_in, self.layers, self.rnn.hidden_size)
        _, h = self.rnn(packed(input, lengths), to_layers(h_in, self.layers))  # (L, batch, H)
        return self.fc(h[-1]), from_layers(h, self.layers)


class CellLoopStream(nn.Module):
    """Stream form of a one-state cell loop: rows past their length keep their state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.rnn_cell, self.linear = model.rnn_cell, model.linear

    def forward(self, input: torch.Tensor, lengths: torch.Tensor, h_in: torch.Tensor):
        check_stream(input, lengths, h_in, 1, self.rnn_cell.hidden_size)
        h = h_in
        for t in range(input.size(1)):
            new = self.rnn_cell(input[:, t], h)
            h = torch.where((lengths > t).unsqueeze(1), new, h)
        return self.linear(h), h
