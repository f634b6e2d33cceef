"""Synthetic, seeded sequence tasks generated on the fly (no downloads).

forecaster: a noisy multichannel sinusoid; channel c is A*sin(w*t + phi + c*PHASE) plus
    noise, with A, w, phi drawn per sequence. The target is channel 0 one step past the end.
    Naive baseline: repeat channel 0's last value.
classifier: which of two AR(1) processes made the sequence, x_t = a*x_{t-1} + e_t with
    a = +AR or -AR (smooth vs. alternating), independent per channel, unit stationary
    variance. Majority baseline ~0.5.

Each split is a list of chunks `(x, y)` whose sequences share one length, drawn uniformly
from [seq_min, seq_max], so training sees many lengths without padding.

    >>> from pipeline.data import make_split
    >>> from pipeline.specs import RECIPES
    >>> x, y = make_split(RECIPES["forecaster"], "test", seed=0)[0]
    >>> x.shape[0], x.shape[2], y.shape
    (64, 10, torch.Size([64, 1]))
"""
from __future__ import annotations

import math

import torch

from .specs import Recipe

SPLITS = ("train", "val", "test")
PHASE = 0.3     # phase step between forecaster channels (radians)
AR = 0.5        # |AR(1) coefficient| of the classifier's two processes

Chunk = tuple[torch.Tensor, torch.Tensor]


def make_split(recipe: Recipe, split: str, seed: int) -> list[Chunk]:
    """Return the chunks of one split; the same (recipe, split, seed) gives the same data."""
    sizes = {"train": recipe.data.train_size, "val": recipe.data.val_size,
             "test": recipe.data.test_size}
    gen = torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))
    make = {"regression": _forecast_chunk, "classification": _classify_chunk}[recipe.model.task]
    chunks = []
    remaining = sizes[split]
    while remaining > 0:
        n = min(recipe.data.chunk_size, remaining)
        length = int(torch.randint(recipe.data.seq_min, recipe.data.seq_max + 1, (1,),
                                   generator=gen))
        chunks.append(make(recipe, n, length, gen))
        remaining -= n
    return chunks


def _forecast_chunk(recipe: Recipe, n: int, length: int, gen: torch.Generator) -> Chunk:
    features = recipe.model.input_size
    amp = 0.5 + torch.rand(n, 1, 1, generator=gen)                  # (n, 1, 1)
    freq = 0.2 + 0.7 * torch.rand(n, 1, 1, generator=gen)
    phi = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    t = torch.arange(length + 1, dtype=torch.float32).view(1, -1, 1)  # (1, seq+1, 1)
    c = torch.arange(features, dtype=torch.float32).view(1, 1, -1)    # (1, 1, features)
    signal = amp * torch.sin(freq * t + phi + PHASE * c)              # (n, seq+1, features)
    signal = signal + recipe.data.noise * torch.randn(signal.shape, generator=gen)
    return signal[:, :-1].contiguous(), signal[:, -1, :recipe.model.output_size].contiguous()


def _classify_chunk(recipe: Recipe, n: int, length: int, gen: torch.Generator) -> Chunk:
    features = recipe.model.input_size
    labels = torch.randint(0, recipe.model.output_size, (n,), generator=gen)   # (n,)
    coef = torch.where(labels == 0, AR, -AR).view(n, 1)                        # (n, 1)
    innov = torch.randn(n, length, features, generator=gen) * math.sqrt(1 - AR**2)
    x = torch.empty(n, length, features)
    x[:, 0] = torch.randn(n, features, generator=gen)  # start in the stationary law
    for t in range(1, length):
        x[:, t] = coef * x[:, t - 1] + innov[:, t]
    return x, labels


def baseline(recipe: Recipe, chunks: list[Chunk]) -> float:
    """The trivial predictor's score on these chunks: naive-repeat MSE, or majority accuracy."""
    if recipe.model.task == "regression":
        out = recipe.model.output_size
        err = torch.cat([(x[:, -1, :out] - y).pow(2).flatten() for x, y in chunks])
        return float(err.mean())
    labels = torch.cat([y for _, y in chunks])
    counts = torch.bincount(labels, minlength=recipe.model.output_size)
    return float(counts.max() / counts.sum())
