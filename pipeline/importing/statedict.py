"""A user's state dict -> the spec of its network and the canonical weights.

    state, fmt = read_state_dict(Path("lstm_state.pt"))
    spec, mapping, notes = recognise(state, "classification", None, "mylstm")
    model = canonical(spec, state, mapping)

What is read, whatever the attribute names: one recurrent layer stack
(`<p>.weight_ih_l{k}[_reverse]`, `weight_hh_...`, `bias_*`) or one cell (`<p>.weight_ih`,
...), and one Linear head (`<q>.weight`, `<q>.bias`). Gate rows per hidden unit in
weight_hh (rows / columns) give the cell: 1 RNN, 3 GRU, 4 LSTM; its columns give H, `l{k}`
the layers, `_reverse` a second direction. Whether a plain RNN used tanh or relu is not in
the weights (`--nonlinearity`, default tanh, said to be assumed). Missing biases
(bias=False) are zeros. Canonical keys are the seeds' names: rnn.* + fc.* for a stack,
rnn_cell.* + linear.* for a cell (pipeline.families.base.MODULE_NAMES).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from ..errors import PipelineError, first_line
from ..families.base import MODULE_NAMES
from ..specs import ModelSpec

RECURRENT = re.compile(r"(?P<prefix>(?:.*\.)?)(?P<kind>weight|bias)_(?P<mat>ih|hh|hr)"
                       r"(?:_l(?P<layer>\d+)(?P<rev>_reverse)?)?")
CELLS = {1: "RNN", 3: "GRU", 4: "LSTM"}


# Why a pickle that holds more than tensors is never loaded, whatever torch suggests.
NEEDED = ("import needs torch.save(model.state_dict()) or a .safetensors file: unpickling "
          "anything else runs code from the file, so it is never done")


class ImportRefused(PipelineError):
    """A state dict (or --module) the pipeline cannot take, with the reason."""


def read_state_dict(path: Path) -> tuple[dict, str]:
    """{key: tensor} from a .safetensors file or a torch.save'd state dict; (dict, format)."""
    import torch

    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    try:
        # torch warns (and its error text advises) that weights_only=False "will likely
        # succeed": the one thing a user must never do with a file they do not trust. Our
        # own line replaces both.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file
                state, fmt = load_file(str(path)), "safetensors"
            else:
                state, fmt = torch.load(str(path), map_location="cpu", weights_only=True), \
                    "torch"
    except Exception as exc:   # torch/safetensors raise many types for a bad file
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if refused:            # a class or function pickled: what weights_only never runs
            what = refused[0].split("GLOBAL", 1)[-1].split(" was ")[0].strip()
            raise ImportRefused(f"{path}: holds pickled Python objects ({what}), not a plain "
                                f"state dict; {NEEDED}") from None
        raise ImportRefused(f"{path}: unreadable ({_reason(exc)}); {NEEDED}") from None
    if not isinstance(state, dict) or not state:
        raise ImportRefused(f"{path}: not a state dict (a dict of tensors): holds "
                            f"{type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ImportRefused(f"{path}: not a state dict: {key!r} holds "
                                f"{type(value).__name__}, not a tensor")
    return state, fmt


def _reason(exc: Exception) -> str:
    """torch's reason for refusing a file, without its advice to set weights_only=False:
    the first line after "WeightsUnpickler error:", else the message's first line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        after = text.split("WeightsUnpickler error:", 1)[1]
        text = next((line for line in after.splitlines() if line.strip()), "")
    reason = first_line(Exception(text)) if text.strip() else type(exc).__name__
    return type(exc).__name__ if "weights_only" in reason else reason


def recognise(state: dict, task: str, nonlinearity: str | None, name: str
              ) -> tuple[ModelSpec, dict[str, str], list[str]]:
    """(spec, {canonical key: source key}, notes) of a state dict; ImportRefused if it is
    not one recurrent stack or cell plus one Linear head with consistent shapes."""
    groups: dict[str, dict] = {}
    for key in state:
        if m := RECURRENT.fullmatch(key):
            groups.setdefault(m["prefix"], {})[key] = m
    if not groups:
        raise ImportRefused("no recurrent layer: no '*.weight_ih_l0' (nn.RNN/GRU/LSTM) or "
                            "'*.weight_ih' (nn.RNNCell/GRUCell/LSTMCell) key")
    if len(groups) > 1:
        raise ImportRefused("two candidate recurrent stacks ("
                            + ", ".join(repr(p.rstrip(".") or "<top>") for p in groups)
                            + "); one recurrent stack or cell is read from a state dict "
                            "alone: give --module MODULE:FACTORY to read your forward")
    (prefix, found), = groups.items()
    if any(m["mat"] == "hr" for m in found.values()):
        raise ImportRefused(f"{prefix}weight_hr_l0: an LSTM with proj_size is not supported")
    layered = {m["layer"] is not None for m in found.values()}
    if layered == {True, False}:
        raise ImportRefused(f"{prefix!r} mixes layer-stack and cell keys")
    form = "stack" if layered == {True} else "cell_loop"
    layers = sorted({int(m["layer"]) for m in found.values()}) if form == "stack" else [0]
    if layers != list(range(len(layers))):
        raise ImportRefused(f"layers {layers} of {prefix!r} are not 0..{len(layers) - 1}")
    directions = 2 if any(m["rev"] for m in found.values()) else 1

    def suffix(layer, d):
        return f"_l{layer}{'_reverse' if d else ''}" if form == "stack" else ""

    hh_key = f"{prefix}weight_hh{suffix(0, 0)}"
    if hh_key not in state or state[hh_key].dim() != 2:
        raise ImportRefused(f"{hh_key}: missing or not a matrix")
    gh, hidden = state[hh_key].shape
    if hidden < 1 or gh % hidden or gh // hidden not in CELLS:
        raise ImportRefused(f"{hh_key} is {tuple(state[hh_key].shape)}: {gh}/{hidden} gate rows "
                            "per hidden unit is not 1 (RNN), 3 (GRU) or 4 (LSTM)")
    gates = gh // hidden
    cell = {3: "gru", 4: "lstm"}.get(gates) or f"rnn_{nonlinearity or 'tanh'}"
    if gates > 1 and nonlinearity:
        raise ImportRefused(f"--nonlinearity is for plain RNN weights; these are {CELLS[gates]}")
    ih0 = f"{prefix}weight_ih{suffix(0, 0)}"
    if ih0 not in state or state[ih0].dim() != 2:
        raise ImportRefused(f"{ih0}: missing or not a matrix")
    features = state[ih0].shape[1]
    rnn, head = MODULE_NAMES[form]
    mapping: dict[str, str] = {}
    for layer in layers:
        for d in range(directions):
            width = features if layer == 0 else hidden * directions
            want = {"weight_ih": (gh, width), "weight_hh": (gh, hidden),
                    "bias_ih": (gh,), "bias_hh": (gh,)}
            for kind, shape in want.items():
                src = f"{prefix}{kind}{suffix(layer, d)}"
                if src not in state:
                    if kind.startswith("bias"):
                        continue            # bias=False: zeros, filled in by `canonical`
                    raise ImportRefused(f"{src}: missing (layer {layer}, direction {d})")
                if tuple(state[src].shape) != shape:
                    raise ImportRefused(f"inconsistent shapes: {src} is "
                                        f"{tuple(state[src].shape)}, expected {shape}")
                mapping[f"{rnn}.{kind}{suffix(layer, d)}"] = src
    extra = sorted(set(found) - set(mapping.values()))
    if extra:
        raise ImportRefused(f"unexpected recurrent keys {extra[:3]}")
    heads = sorted(k[:-len("weight")] for k in state
                   if k.endswith("weight") and k not in found and state[k].dim() == 2)
    if not heads:
        raise ImportRefused("no Linear head: no 2-D '*.weight' beside the recurrent layer")
    if len(heads) > 1:
        raise ImportRefused(f"two candidate heads ({', '.join(h.rstrip('.') for h in heads)}); "
                            "one nn.Linear on the last step's output is read from a state dict "
                            "alone: give --module MODULE:FACTORY to read your forward")
    q = heads[0]
    leftover = sorted(set(state) - set(found) - {f"{q}weight", f"{q}bias"})
    if leftover:
        raise ImportRefused(f"unexpected parameters {leftover[:3]}: one recurrent layer and "
                            "one nn.Linear head are read from a state dict alone: give --module "
                            "MODULE:FACTORY to read your forward")
    outputs, width = state[f"{q}weight"].shape
    if width != hidden * directions:
        raise ImportRefused(f"inconsistent shapes: head {q}weight takes {width} inputs, the "
                            f"recurrent layer gives {hidden * directions}")
    if f"{q}bias" in state and tuple(state[f"{q}bias"].shape) != (outputs,):
        raise ImportRefused(f"inconsistent shapes: {q}bias is {tuple(state[f'{q}bias'].shape)}")
    if task == "classification" and outputs < 2:
        raise ImportRefused("a classifier needs one logit per class (>= 2 outputs); import a "
                            "single-logit model with --task regression")
    mapping[f"{head}.weight"] = f"{q}weight"
    if f"{q}bias" in state:
        mapping[f"{head}.bias"] = f"{q}bias"
    spec = ModelSpec(name, task, features, hidden, outputs, cell=cell, form=form,
                     num_layers=len(layers), bidirectional=directions == 2)
    notes = []
    if gates == 1 and not nonlinearity:
        notes.append("nonlinearity tanh assumed (the weights cannot tell; give --nonlinearity "
                     "relu for a relu RNN)")
    if len(mapping) < (len(layers) * directions * 4 + 2):
        notes.append("missing biases (bias=False) are zeros")
    return spec, mapping, notes


def canonical(spec: ModelSpec, state: dict, mapping: dict[str, str], build=None):
    """The canonical eager model (`build()`, default the seed form's) holding the state
    dict's weights (float32); zeros for missing biases. ImportRefused on a non-float or
    non-finite tensor."""
    import torch

    from ..families import build_model

    model = build() if build else build_model(spec)
    weights = {}
    for key, target in model.state_dict().items():
        src = mapping.get(key)
        if src is None:
            weights[key] = torch.zeros_like(target)
            continue
        value = state[src]
        if not value.is_floating_point():
            raise ImportRefused(f"{src}: dtype {value.dtype}, not floating point")
        if not bool(torch.isfinite(value).all()):
            raise ImportRefused(f"{src}: holds NaN or Inf")
        weights[key] = value.detach().to(torch.float32).contiguous()
    model.load_state_dict(weights, strict=True)
    return model.eval()
