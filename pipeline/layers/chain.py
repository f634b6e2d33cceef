"""What holds for any chain of layers, read from the dataclasses alone (no torch):
whether it is well formed, whether it has a stream form, its widths, FLOPs and words.

    check_chain(spec)          None, or the first problem in one line
    stream_refusal(chain)      None, or why the chain has no stream artifacts
    describe_chain(spec)       the model card's "Network:" sentence
    flops_per_layer(spec, seq) [(layer words, FLOPs per row)] at a sequence length
"""
from __future__ import annotations

from .readout import STREAMABLE

MAX_STREAM_STATES = 8      # the TorchScript stream forms take states positionally (network.py
                           # has one class per count, STREAMS; e.g. three LSTM layers: 6)


def widths(spec) -> list[int]:
    """The width coming into each layer, then the output's."""
    width = spec.input_size if spec.input_kind == "features" else 0
    out = []
    for layer in spec.chain:
        out.append(width)
        width = layer.out_width(width)
    return out + [width]


def check_chain(spec) -> str | None:
    chain = spec.chain
    kinds = [layer.kind for layer in chain]
    if "recurrent" not in kinds:
        return "a chain needs at least one recurrent layer"
    if (spec.input_kind == "tokens") != (kinds[0] == "embedding") or "embedding" in kinds[1:]:
        return "token ids come in through an Embedding, the chain's first layer, only"
    if kinds.count("readout") > 1:
        return "a chain has at most one readout"
    if "readout" in kinds and "recurrent" in kinds[kinds.index("readout"):]:
        return "a recurrent layer after the readout has no sequence to read"
    ws = widths(spec)
    for layer, width in zip(chain, ws):
        want = {"linear": "inputs", "recurrent": "inputs", "layer_norm": "size",
                "readout": "width"}.get(layer.kind)
        if want and getattr(layer, want) != width:
            return f"{layer.kind} takes {getattr(layer, want)} features, gets {width}"
    if ws[-1] != spec.output_size:
        return f"the chain gives {ws[-1]} outputs, output_size is {spec.output_size}"
    for i, layer in enumerate(chain):
        if layer.kind == "readout" and layer.how.startswith("final_state") and \
                (i == 0 or chain[i - 1].kind != "recurrent"):
            return "a final-state readout must follow its recurrent layer"
    return None


def stream_refusal(chain) -> str | None:
    recurrent = [layer for layer in chain if layer.kind == "recurrent"]
    readout = next((layer for layer in chain if layer.kind == "readout"), None)
    if any(layer.bidirectional for layer in recurrent):
        return "bidirectional: the backward direction needs the whole sequence"
    if readout is not None and readout.how not in STREAMABLE:
        return (f"its {readout.how} readout reads every step of the whole sequence; a stream "
                "gives the state after each row's last step (last_step, final_state or per step)")
    if sum(layer.states for layer in recurrent) > MAX_STREAM_STATES:
        return f"more than {MAX_STREAM_STATES} state tensors"
    return None


def describe_chain(spec) -> str:
    inp = f"token ids (0..{spec.input_size - 1})" if spec.input_kind == "tokens" else \
        f"{spec.input_size} features per step"
    words = [_words(spec, layer) for layer in spec.chain]
    out = f"{spec.output_size} per step" if spec.per_step else f"{spec.output_size} per row"
    return f"{inp} -> " + " -> ".join(words) + f" -> {out}"


def flops_per_layer(spec, seq: int) -> list[tuple[str, int]]:
    """FLOPs for one row of `seq` steps, layer by layer (per-step layers run seq times)."""
    rows, stepping = [], True
    for layer in spec.chain:
        if layer.kind == "readout":
            stepping = False
        rows.append((_words(spec, layer), layer.flops() * (seq if stepping else 1)))
    return rows


def _words(spec, layer) -> str:
    """The layer's words; a readout of a packed chain reads each row at its own end."""
    if layer.kind == "readout" and spec.takes_lengths:
        return layer.describe(at_lengths=True)
    return layer.describe()
