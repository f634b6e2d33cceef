"""Every number of a config.json checked for type and range before anything uses it.

    >>> check_recipe_dict(json.loads(text)["recipe"])     # ValueError naming the field
    >>> check_weight_shapes(spec, Path(".../weights.safetensors"))  # before building the model

Why: a manifest catches a changed file, not a changed meaning; whoever edits config.json can
rewrite manifest.json to match. A NaN tolerance turns the numeric check off (every
comparison with NaN is False, so nothing "exceeds" it), and `hidden_size: 1e9` asks torch
for exabytes. So each field is checked here, by its declared type, against the limits
below, and the one line names the field: `model.cpu_tolerance.atol is NaN; ...`.

Limits: sizes 1..65,536 (input, hidden, output), layers 1..64, example batch 1..4,096 and
sequence 1..100,000; tolerances and the drift factor finite and >= 0. Then the weights'
shapes, read from the safetensors header (no tensor loaded), must be the ones the spec
builds, checked on torch's meta device (nothing allocated), so a spec that disagrees with
its weights is named before a model of its size is built.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from .specs import DataSpec, ModelSpec, Recipe, TrainSpec, Tolerance

MAX_SIZE = 65_536        # input_size, hidden_size, output_size
MAX_LAYERS = 64
LIMITS = {   # field -> (low, high), inclusive; fields of any spec dataclass
    "input_size": (1, MAX_SIZE), "hidden_size": (1, MAX_SIZE), "output_size": (1, MAX_SIZE),
    "num_layers": (1, MAX_LAYERS), "example_batch": (1, 4096), "example_seq": (1, 100_000),
    "atol": (0, math.inf), "rtol": (0, math.inf), "drift_factor": (0, math.inf),
    "seq_min": (1, 100_000), "seq_max": (1, 100_000), "train_size": (1, 10**8),
    "val_size": (1, 10**8), "test_size": (1, 10**8), "chunk_size": (1, 10**6),
    "noise": (0, math.inf), "epochs": (0, 10**6), "lr": (0, math.inf),
    "grad_clip": (0, math.inf), "seed": (0, 2**63 - 1),
}
# a chain's layers (issue 22): their sizes, and the recurrent layer's `layers` count
LAYER_LIMITS = {"inputs": (1, MAX_SIZE), "outputs": (1, MAX_SIZE), "hidden": (1, MAX_SIZE),
                "dim": (1, MAX_SIZE), "size": (1, MAX_SIZE), "num": (1, 10**7),
                "layers": (1, MAX_LAYERS), "eps": (0, 1)}
MAX_CHAIN = 256          # layers in a chain
NESTED = {"model": ModelSpec, "data": DataSpec, "train": TrainSpec,
          "cpu_tolerance": Tolerance, "cuda_tolerance": Tolerance}


def check_recipe_dict(recipe: dict) -> None:
    """Raise ValueError naming the first field of a config.json "recipe" that is not of its
    type or out of range."""
    _check(Recipe, recipe, "")


def check_spec_dict(spec: dict) -> None:
    """The same for a bare ModelSpec dict (a published manifest's `spec`)."""
    _check(ModelSpec, spec, "model.")


def _check(cls, data, where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or 'recipe'} is {type(data).__name__}, "
                         "not an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            continue                      # unknown keys: the dataclass refuses them by name
        name = f"{where}{key}"
        if cls is ModelSpec and key == "layers":
            _check_layers(value, name)
            continue
        nested = NESTED.get(key)
        if nested is not None:
            if value is not None:
                _check(nested, value, name + ".")
            continue
        kind = str(field.type)
        if kind == "int":
            _number(name, value, integer=True)
        elif kind == "float":
            _number(name, value, integer=False)
        elif kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"{name} is {value!r}; must be true or false")
        elif kind == "str" and not (isinstance(value, str) and value):
            raise ValueError(f"{name} is {value!r}; must be a non-empty string")
    if cls is DataSpec and isinstance(data.get("seq_min"), int) and \
            isinstance(data.get("seq_max"), int) and data["seq_min"] > data["seq_max"]:
        raise ValueError(f"{where}seq_min {data['seq_min']} > {where}seq_max {data['seq_max']}")


def _check_layers(layers, name: str) -> None:
    """Each layer of a chain by its kind's dataclass: numbers typed, sizes in range."""
    from .layers import KINDS
    if not isinstance(layers, list) or len(layers) > MAX_CHAIN:
        raise ValueError(f"{name} must be a list of at most {MAX_CHAIN} layers")
    for i, layer in enumerate(layers):
        where = f"{name}[{i}]"
        kind = KINDS.get(layer.get("kind")) if isinstance(layer, dict) else None
        if kind is None:
            raise ValueError(f"{where} is not a layer of a known kind ({', '.join(KINDS)})")
        for field in dataclasses.fields(kind):
            value = layer.get(field.name)
            if field.name not in layer or str(field.type) not in ("int", "float"):
                continue
            _number(f"{where}.{field.name}", value, integer=str(field.type) == "int",
                    limits=LAYER_LIMITS)


def _number(name: str, value, integer: bool, limits: dict = LIMITS) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        raise ValueError(f"{name} is {value!r}; must be {'an integer' if integer else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} is {value!r}; must be a finite number")
    low, high = limits.get(name.rsplit(".", 1)[-1], (-math.inf, math.inf))
    if not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in {low}..{high:,}"
        raise ValueError(f"{name} is {value!r}; must be {bound}")


def check_weight_shapes(spec: ModelSpec, weights: Path) -> None:
    """Raise ValueError naming the first tensor whose shape in the safetensors header is not
    the one `spec` builds (or that is missing / extra); nothing is loaded or allocated."""
    import torch
    from safetensors import safe_open

    from .families import build_model

    with torch.device("meta"):                   # shapes only: no memory for the weights
        if spec.layers:                          # a chain of layers (network.py)
            from .network import build_chain
            model = build_chain(spec)
        else:
            model = build_model(spec)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(str(weights), "pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    for key, shape in expected.items():
        if key not in found:
            raise ValueError(f"{weights.name} has no {key}, which config.json's spec needs")
        if found[key] != shape:
            raise ValueError(f"{weights.name}: {key} is {found[key]}, but config.json's spec "
                             f"(input_size {spec.input_size}, hidden_size {spec.hidden_size}, "
                             f"output_size {spec.output_size}, num_layers {spec.num_layers}) "
                             f"needs {shape}")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ValueError(f"{weights.name} holds {extra[0]}, which config.json's spec does not "
                         "have")
