"""Trained checkpoints: `<out>/<model>/weights.safetensors` + `<out>/<model>/config.json`.

Weights go through safetensors (no pickle, so loading runs no code). config.json holds the
recipe (model, data and training specs), the metrics with their baselines and the library
versions; `load_checkpoint` rebuilds the model from the saved spec, not from today's code
defaults.

    >>> model, config = load_checkpoint("exported/forecaster")
    >>> config["metrics"]["test_mse"] <= 0.5 * config["metrics"]["baseline_mse"]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointError, first_line
from .fsio import atomic_paths, json_bytes
from .provenance import versions
from .specs import ModelSpec, Recipe, recipe_from_dict, to_dict
from .validate import check_recipe_dict, check_weight_shapes

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"

if TYPE_CHECKING:   # torch loads only where weights do, so read_config stays light
    from torch import nn


def save_checkpoint(model_dir: Path, model: nn.Module, recipe: Recipe, metrics: dict) -> None:
    """Write weights, then config (the config names what the weights are, so it comes last)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # One set: both are written and flushed before either replaces the old pair.
    with atomic_paths(model_dir / WEIGHTS, model_dir / CONFIG) as (weights, config):
        weights.write_bytes(save(state, metadata={"model": recipe.model.name}))
        config.write_bytes(json_bytes({
            "recipe": to_dict(recipe),
            "metrics": metrics,
            "versions": versions(),
        }))


def read_config(model_dir: Path) -> dict:
    """config.json with its "recipe" rebuilt as a `Recipe`; imports no torch."""
    path = Path(model_dir) / CONFIG
    try:
        config = json.loads(path.read_text())
        check_recipe_dict(config["recipe"])     # every number's type and range, by name
        config["recipe"] = recipe_from_dict(config["recipe"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; run `python -m pipeline train` first") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a valid config ({exc})") from None
    return config


def load_weights(model_dir: Path, spec: ModelSpec) -> nn.Module:
    """Build the model from `spec` and load the safetensors weights into it, strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .families import build_model

    path = Path(model_dir) / WEIGHTS
    try:
        check_weight_shapes(spec, path)          # before a model of the spec's size is built
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; run `python -m pipeline train` first") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot load weights ({first_line(exc)})") from None
    except ValueError as exc:       # shapes: read from the header, not what the spec builds
        raise CheckpointError(f"{path}: cannot load weights: they do not fit config.json "
                              f"({first_line(exc)})") from None
    if spec.layers:                     # a chain of layers (issue 22)
        from .network import build_chain
        model = build_chain(spec)
    else:
        model = build_model(spec)
    try:
        state = load_file(path)
        model.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; run `python -m pipeline train` first") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot load weights ({first_line(exc)})") from None
    return model.eval()


def load_checkpoint(model_dir: str | Path) -> tuple[nn.Module, dict]:
    """Return (eval-mode model, config dict whose "recipe" is a `Recipe`)."""
    config = read_config(Path(model_dir))
    return load_weights(Path(model_dir), config["recipe"].model), config

