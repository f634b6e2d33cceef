"""The layer kinds a model's chain is made of, one module each.

    from pipeline.layers import Linear, Recurrent, Readout, layer_from_dict
    chain = (Recurrent("gru", "stack", 6, 32), Readout("last_step", 32), Linear(32, 2))

Each kind is a small frozen dataclass (saved in config.json under `model.layers`) with:
  - `torch_module()`: its eager, TorchScript-able torch module (forward(x, lengths) -> y,
    see modules.py for the adapters),
  - `onnx(b, x, ctx)`: its ONNX nodes, written with pipeline.families.graph.GraphBuilder
    (a Recurrent's nodes are the export stage's, which owns the recurrent operators),
  - `out_width(width)`, `per_step` (does it keep the time axis), `stateful` (does it carry
    state in a stream: only Recurrent), its `flops` per step or per row, and `describe()`,
    its words on the model card.
How `import --module` recognises each kind in a user's forward is in
pipeline/importing/trace.py (`LEAVES` / `FUNCTIONS`), one table row per kind.

Adding a kind: one module here with its dataclass, registered in KINDS, plus its row in
trace.py and its tests (tests/layers/). This package imports no torch at import time:
config.json files are read where torch is absent (the serving environment).
"""
from __future__ import annotations

from .activation import ACTIVATIONS, Activation
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .norm import LayerNorm
from .readout import READOUTS, Readout
from .recurrent import Recurrent

__all__ = ["ACTIVATIONS", "Activation", "Dropout", "Embedding", "KINDS", "LayerNorm", "Linear",
           "READOUTS", "Readout", "Recurrent", "layer_from_dict"]

KINDS = {cls.kind: cls for cls in (Embedding, Linear, LayerNorm, Dropout, Activation,
                                   Recurrent, Readout)}


def layer_from_dict(data: dict):
    """A layer dataclass from its `asdict` form ({"kind": ..., fields...})."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind](**data)
