"""Stage 1 for a user's own model: import a state dict so it goes through every later stage
(export, verify, bench, predict, publish, serve) like a built-in recipe.

    python -m pipeline import mylstm --weights lstm_state.pt --task classification
    python -m pipeline import mygru --weights gru.safetensors --task regression \
        --module mypackage.models:make_model

    statedict.py  read the file (weights_only / safetensors), recognise the network, the
                  canonical weights
    trace.py      --module: the user's forward traced by torch.fx (reader.py: into a chain)
    chain.py      --module: the spec and canonical weights of that chain (a cell loop is
                  recorded from the order its modules run in)
    module.py     --module: the user's forward must equal the canonical form

Writes `<out>/<name>/weights.safetensors` and `config.json` (the spec, and the recipe's
`source`: the file, its sha256, the key mapping, what was assumed) only after every check
passed; a refusal is one ImportRefused line and writes nothing. Both files are written into
a temp folder `<out>/.tmp-<name>.<pid>.*` that is renamed onto `<out>/<name>` last, so a
killed import leaves no half model folder under the name (the next import sweeps the temp
folder). Names the artifact root uses for itself (`model_repository`, ...) are refused.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..specs import RECIPES, Recipe
from .statedict import ImportRefused, canonical, read_state_dict, recognise

__all__ = ["ImportConfig", "ImportRefused", "main"]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Folders of the artifact root that are not models: publish's default registry, the soak
# run's output (Makefile). A model of that name would share their folder and its lock.
RESERVED = ("model_repository", "soak")


@dataclass(frozen=True)
class ImportConfig:
    name: str
    weights: Path
    task: str                          # regression | classification
    nonlinearity: str | None = None    # tanh | relu: plain RNN weights only
    module: str | None = None          # "package.module:factory", checked against the weights
    out: Path = Path("exported")


def main(config: ImportConfig, log: Callable[[str], None] = print) -> dict:
    """Import; return {"spec", "folder", "notes", "checked_shapes"}."""
    from ..checkpoint import save_checkpoint
    from ..fsio import ensure_dir, sha256_file, sweep_stale_temps, temp_dir

    name, path = config.name, Path(config.weights)
    if not NAME.fullmatch(name):
        raise ImportRefused(f"model name {name!r}: use a plain identifier (letters, digits, _)")
    if name in RECIPES:
        raise ImportRefused(f"model name {name!r} is a built-in recipe; choose another")
    if name.lower() in RESERVED:
        raise ImportRefused(f"model name {name!r} is a folder the pipeline uses for itself "
                            f"under --out ({', '.join(RESERVED)}); choose another")
    folder = Path(config.out) / name
    if Path(config.out).is_dir():
        sweep_stale_temps(config.out)         # a killed import's temp folder
    if folder.exists():
        raise ImportRefused(f"{folder} exists already; choose another name (or remove it)")
    state, fmt = read_state_dict(path)
    checked = 0
    if config.module:                  # the chain read from the user's forward (trace.py)
        from .chain import import_module
        spec, model, mapping, notes, checked = import_module(
            config.module, state, config.task, config.nonlinearity, name)
    else:
        spec, mapping, notes = recognise(state, config.task, config.nonlinearity, name)
        model = canonical(spec, state, mapping)
        notes.append("head assumed to read the last step's output (out[:, -1, :]); give "
                      "--module MODULE:FACTORY to check it against your own forward")
    source = {"file": path.name, "sha256": sha256_file(path), "format": fmt,
              "keys": mapping, "module": config.module, "notes": notes,
              "imported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    recipe = Recipe(model=spec, data=None, train=None, source=source)
    ensure_dir(config.out)
    staging = temp_dir(folder)
    try:
        save_checkpoint(staging, model, recipe, metrics={})
        os.chmod(staging, 0o755)           # mkdtemp makes 0700; a model folder is shared
        if folder.exists():
            raise ImportRefused(f"{folder} exists already; choose another name")
        # last, atomic: the folder appears whole; a racing import of this name (a
        # non-empty folder there now) fails here
        os.rename(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ImportRefused(f"{folder} exists already; choose another name") from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)    # nothing half-written stays
        raise
    return {"spec": spec, "folder": folder, "notes": notes, "checked_shapes": checked}
