"""Stage 1: train one model on its synthetic task and save the checkpoint.

    python -m pipeline train --model forecaster --epochs 8
    python scripts/train.py --model classifier

Adam with the seeds' losses (MSE for the forecaster, cross-entropy for the classifier),
one mini-batch per data chunk, validation after each epoch, test metrics against the
trivial baseline at the end. Seeds fix data, initialisation and shuffling, so two runs on
one machine give identical weights.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import save_checkpoint
from .data import Chunk, baseline, make_split
from .fsio import ensure_dir, model_lock, sweep_stale_temps
from .families import build_model
from .specs import RECIPES, Recipe


@dataclass(frozen=True)
class TrainConfig:
    model: str
    out: Path = Path("exported")
    epochs: int | None = None      # None: the recipe's
    seed: int | None = None        # None: the recipe's
    progress: bool = True          # show a progress bar (only on a terminal)


def recipe_for(config: TrainConfig) -> Recipe:
    recipe = RECIPES[config.model]
    overrides = {k: v for k, v in (("epochs", config.epochs), ("seed", config.seed))
                 if v is not None}
    return dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **overrides))


@torch.inference_mode()
def evaluate(model: nn.Module, recipe: Recipe, chunks: list[Chunk]) -> float:
    """Mean squared error (regression) or accuracy (classification) over all chunks."""
    model.eval()
    if recipe.model.task == "regression":
        err = torch.cat([(model(x) - y).pow(2).flatten() for x, y in chunks])
        return float(err.mean())
    hits = torch.cat([model(x).argmax(dim=1) == y for x, y in chunks])
    return float(hits.float().mean())


def main(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train `config.model`, save `<out>/<model>/{weights.safetensors,config.json}`, return metrics."""
    from tqdm import tqdm

    recipe = recipe_for(config)
    spec, seed = recipe.model, recipe.train.seed
    model_dir = ensure_dir(Path(config.out) / spec.name)
    torch.manual_seed(seed)
    model = build_model(spec)
    splits = {s: make_split(recipe, s, seed) for s in ("train", "val", "test")}
    loss_fn = nn.MSELoss() if spec.task == "regression" else nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.train.lr)
    shuffle = torch.Generator().manual_seed(seed)
    metric = "mse" if spec.task == "regression" else "accuracy"

    start = time.perf_counter()
    for epoch in range(1, recipe.train.epochs + 1):
        model.train()
        order = torch.randperm(len(splits["train"]), generator=shuffle).tolist()
        bar = tqdm(order, desc=f"{spec.name} {epoch}/{recipe.train.epochs}",
                   disable=None if config.progress else True, leave=False)
        total = 0.0
        for i in bar:
            x, y = splits["train"][i]          # x: (chunk, seq, features)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), recipe.train.grad_clip)
            optimizer.step()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val = evaluate(model, recipe, splits["val"])
        log(f"{spec.name} epoch {epoch}/{recipe.train.epochs}: "
            f"train loss {total / len(order):.4f}, val {metric} {val:.4f}")
    seconds = time.perf_counter() - start

    metrics = {
        "metric": metric,
        "test": evaluate(model, recipe, splits["test"]),
        "baseline": baseline(recipe, splits["test"]),
        "baseline_kind": "repeat last value" if metric == "mse" else "majority class",
        "val": val,
        "train_seconds": round(seconds, 2),
    }
    # Training itself needs no lock (it writes nothing; runs are deterministic); the lock
    # keeps this save from landing in the middle of another run's export of this folder.
    with model_lock(model_dir):
        sweep_stale_temps(model_dir)   # left by a killed run; see fsio
        save_checkpoint(model_dir, model, recipe, metrics)
    return metrics
