"""The recurrent families, one module each (rnn.py, gru.py, lstm.py), and what uses them all.

    >>> from pipeline.families import build_model, family
    >>> model = build_model(spec)                 # the canonical eager module of a ModelSpec
    >>> family(spec).native_op                    # "LSTM", "GRU", "RNN" or None

`build_model` is the model every stage rebuilds from a saved spec; `layer_weights` and
`head_weights` read its parameters (numpy) for the ONNX translation; `StreamReference` is
the eager reference of the stream contract, row by row on each unpadded sequence through
the model's own torch layers, which export and verify compare the stream artifacts with.
Adding a family: one module with a `Family` subclass, registered in FAMILIES.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import MODULE_NAMES, Family, Weights

if TYPE_CHECKING:
    from ..specs import ModelSpec


def _families() -> dict[str, Family]:
    from .gru import GRU_FAMILY
    from .lstm import LSTM_FAMILY
    from .rnn import RNN_RELU, RNN_TANH
    return {f.cell: f for f in (RNN_TANH, RNN_RELU, GRU_FAMILY, LSTM_FAMILY)}


def family(spec_or_cell) -> Family:
    cell = getattr(spec_or_cell, "cell", spec_or_cell)
    return _families()[cell]


def by_gates(gates: int) -> list[Family]:
    """The families whose weights have `gates` blocks per hidden unit (import reads this)."""
    return [f for f in _families().values() if f.gates == gates]


def build_model(spec: ModelSpec):
    """The canonical eager module: a Stack (rnn + fc) or a cell loop (rnn_cell + linear)."""
    from torch import nn

    from .base import Stack

    fam = family(spec)
    head = nn.Linear(spec.hidden_size * spec.directions, spec.output_size)
    if spec.form == "stack":
        return Stack(fam.torch_stack(spec), head)
    return fam.cell_loop(fam.torch_cell(spec), head)


def layer_weights(spec: ModelSpec, state: dict) -> list[list[Weights]]:
    """[layer][direction] Weights (numpy, torch gate order) from the canonical state dict."""
    import numpy as np

    rnn, _ = MODULE_NAMES[spec.form]

    def get(key):
        return np.asarray(state[f"{rnn}.{key}"].detach().cpu().numpy(), np.float32)

    if spec.form == "cell_loop":
        return [[Weights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"))]]
    return [[Weights(*(get(f"{k}_l{layer}{'_reverse' if d else ''}")
                       for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
             for d in range(spec.directions)] for layer in range(spec.num_layers)]


def head_weights(spec: ModelSpec, state: dict):
    """(W (O, D*H), b (O,)) of the linear head, numpy."""
    _, head = MODULE_NAMES[spec.form]
    return tuple(state[f"{head}.{k}"].detach().cpu().numpy() for k in ("weight", "bias"))


class StreamReference:
    """Eager reference of the stream contract: each row alone, unpadded, through the model's
    own layers from its given state. Called as (x, lengths, *states) -> (output, *states)."""

    def __init__(self, model, spec: ModelSpec):
        self.model, self.spec = model.eval(), spec

    def __call__(self, x, lengths, *states):
        import torch

        from .base import check_stream, from_layers, to_layers

        spec, layers = self.spec, self.spec.num_layers
        for s in states:
            check_stream(x, lengths, s, layers, spec.hidden_size)
        rnn, head = (getattr(self.model, n) for n in MODULE_NAMES[spec.form])
        rows = []
        for i, n in enumerate(lengths.tolist()):
            row = x[i:i + 1, :n]                                     # (1, n, F)
            hx = [to_layers(s[i:i + 1], layers) for s in states]     # (layers, 1, H) each
            if spec.form == "stack":
                _, final = rnn(row, tuple(hx) if len(hx) > 1 else hx[0])
                final = list(final) if isinstance(final, tuple) else [final]
            else:
                final = [h[0] for h in hx]                           # (1, H) each
                for t in range(n):
                    step = rnn(row[:, t], tuple(final) if len(final) > 1 else final[0])
                    final = list(step) if isinstance(step, tuple) else [step]
                final = [f.unsqueeze(0) for f in final]
            rows.append([from_layers(f, layers) for f in final])
        out_states = [torch.cat([r[k] for r in rows]) for k in range(len(states))]
        top = out_states[0] if layers == 1 else out_states[0][:, -1]   # (batch, H)
        return (head(top), *out_states)
