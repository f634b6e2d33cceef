"""A model that is a chain of layers (ModelSpec.layers): its eager module, its stream
module and its stream reference; the only place (with the export stage's chain_graph.py,
which writes its ONNX) that walks a chain.

    model = build_chain(spec)              # Chain: forward(input[, lengths]) -> output
    stream = chain_stream(model, spec)     # forward(input, lengths, *states) -> (output, *states)
    ref = ChainStreamReference(model, spec)  # the same contract, row by row, unpadded

The chain module's state dict is `layers.<i>.inner.*` for a stateless layer (the torch.nn
module's own keys) and `layers.<i>.rnn.*` for a recurrent one (nn.GRU's, nn.LSTMCell's...),
so `import` maps a user's weights by prefix and `layer_weights` reads them per layer.
"""
from __future__ import annotations

from typing import List

import torch      # a chain's modules are torch modules: imported where models are built
from torch import nn

from .layers.modules import Step
from .specs import ModelSpec


class Chain(nn.Module):
    """forward(input) -> output: the layers in order; every row is full length."""

    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((input.size(0),), input.size(1), dtype=torch.long,
                             device=input.device)
        return self.run(input, lengths)

    def run(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, lengths)
        return x


class PackedChain(Chain):
    """forward(input, lengths): the user's forward packed its input; rows stop at lengths."""

    def forward(self, input: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.run(input, lengths)


def build_chain(spec: ModelSpec) -> Chain:
    modules, first = [], 0
    for layer in spec.chain:
        if layer.kind == "recurrent":
            modules.append(layer.torch_module(first))
            first += layer.states
        elif layer.kind == "readout":
            modules.append(layer.torch_module())
        else:
            modules.append(Step(layer.torch_module()))
    return (PackedChain if spec.takes_lengths else Chain)(modules)


def layer_weights(state: dict, index: int) -> dict:
    """Layer `index`'s parameters as numpy, keyed without the chain's prefix (weight,
    bias, weight_ih_l0, ...)."""
    import numpy as np
    out = {}
    for key, value in state.items():
        parts = key.split(".", 3)
        if parts[0] == "layers" and parts[1] == str(index):
            out[parts[3]] = np.asarray(value.detach().cpu().numpy(), np.float32)
    return out


# --- the stream form: forward(input, lengths, *states) -> (output, *states) ----------------
class _ChainStream(nn.Module):
    def __init__(self, chain: Chain):
        super().__init__()
        self.layers = chain.layers

    def run(self, x: torch.Tensor, lengths: torch.Tensor, states: List[torch.Tensor]
            ) -> List[torch.Tensor]:
        if x.size(1) < 1 or lengths.dim() != 1 or lengths.size(0) != x.size(0):
            raise ValueError("input must be (batch, seq >= 1, ...), lengths (batch,)")
        if bool((lengths < 1).any()) or bool((lengths > x.size(1)).any()):
            raise ValueError("every length must be in 1..seq")
        for s in states:
            if s.size(0) != x.size(0):
                raise ValueError("every state's batch must be the input's")
        for layer in self.layers:
            x, states = layer.stream(x, lengths, states)
        return [x] + states


# One class per state count: TorchScript compiles a forward from its source, and the
# stream contract takes each state as its own positional input (s0, s1, ...).
class ChainStream1(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor):
        r = self.run(input, lengths, [s0])
        return r[0], r[1]


class ChainStream2(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor):
        r = self.run(input, lengths, [s0, s1])
        return r[0], r[1], r[2]


class ChainStream3(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2])
        return r[0], r[1], r[2], r[3]


class ChainStream4(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2, s3])
        return r[0], r[1], r[2], r[3], r[4]


class ChainStream5(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2, s3, s4])
        return r[0], r[1], r[2], r[3], r[4], r[5]


class ChainStream6(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor,
                s5: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2, s3, s4, s5])
        return r[0], r[1], r[2], r[3], r[4], r[5], r[6]


class ChainStream7(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor,
                s5: torch.Tensor, s6: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2, s3, s4, s5, s6])
        return r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]


class ChainStream8(_ChainStream):
    def forward(self, input: torch.Tensor, lengths: torch.Tensor, s0: torch.Tensor,
                s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor, s4: torch.Tensor,
                s5: torch.Tensor, s6: torch.Tensor, s7: torch.Tensor):
        r = self.run(input, lengths, [s0, s1, s2, s3, s4, s5, s6, s7])
        return r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]


STREAMS = (ChainStream1, ChainStream2, ChainStream3, ChainStream4, ChainStream5,
           ChainStream6, ChainStream7, ChainStream8)


def chain_stream(model: Chain, spec: ModelSpec) -> nn.Module:
    """The TorchScript-able stream module (states positional: up to MAX_STREAM_STATES, the
    number of classes in STREAMS; tests/layers check the two agree)."""
    return STREAMS[len(spec.state_names) - 1](model)


class ChainStreamReference:
    """Eager reference of the stream contract: each row alone, unpadded, through the chain's
    own torch layers from its given states (no packing, no masking)."""

    def __init__(self, model: Chain, spec: ModelSpec):
        self.model, self.spec = model.eval(), spec

    def __call__(self, x, lengths, *states):
        rows = [self._row(x[i:i + 1, :n], [s[i:i + 1] for s in states])
                for i, n in enumerate(lengths.tolist())]
        if self.spec.per_step:     # rows of their own lengths: pad to seq (zeros)
            seq = x.size(1)
            outs = [torch.nn.functional.pad(r[0], (0, 0, 0, seq - r[0].size(1))) for r in rows]
        else:
            outs = [r[0] for r in rows]
        return (torch.cat(outs), *(torch.cat([r[1][k] for r in rows])
                                   for k in range(len(states))))

    def _row(self, x, states):
        from .families.base import from_layers, to_layers
        states = list(states)
        first = 0
        for layer, module in zip(self.spec.chain, self.model.layers):
            if layer.kind == "readout":
                x = x[:, -1]                       # the row's last step (one-way)
            elif layer.kind != "recurrent":
                x = module.inner(x)
            elif layer.form == "stack":
                hx = [to_layers(s, layer.layers) for s in states[first:first + layer.states]]
                x, final = module.rnn(x, tuple(hx) if len(hx) > 1 else hx[0])
                final = list(final) if isinstance(final, tuple) else [final]
                states[first:first + layer.states] = [from_layers(f, layer.layers)
                                                      for f in final]
                first += layer.states
            else:
                hx, outs = states[first:first + layer.states], []
                for t in range(x.size(1)):
                    step = module.rnn(x[:, t], tuple(hx) if len(hx) > 1 else hx[0])
                    hx = list(step) if isinstance(step, tuple) else [step]
                    outs.append(hx[0])
                states[first:first + layer.states] = hx
                x = torch.stack(outs, 1)
                first += layer.states
        return x, states
