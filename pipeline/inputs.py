"""Seeded inputs of a model's contract: float features or token ids inside the vocabulary,
and per-row lengths for a forward that packs its input.

    feeds = model_feeds(spec, rng, batch=2, seq=7)     # {"input": ..., ["lengths": ...]}
    x = garbage_past(spec, rng, x, lengths)             # padding no model may read
"""
from __future__ import annotations

import numpy as np


def sample_input(spec, rng, batch: int, seq: int, scale: float = 1.0) -> np.ndarray:
    """(batch, seq, F) float32 at `scale`, or (batch, seq) int64 ids in 0..vocab-1."""
    if spec.input_kind == "tokens":
        return rng.integers(0, spec.input_size, (batch, seq)).astype(np.int64)
    return (scale * rng.standard_normal((batch, seq, spec.input_size))).astype(np.float32)


def sample_lengths(rng, batch: int, seq: int) -> np.ndarray:
    """Lengths in 1..seq: row 0 full, row 1 of length 1, the others drawn."""
    lengths = rng.integers(1, seq + 1, batch)
    lengths[0] = seq
    if batch > 1:
        lengths[1] = 1
    return lengths.astype(np.int64)


GARBAGE = 1e3             # padding values: a read past a length would show at once


def garbage_past(spec, rng, x: np.ndarray, lengths) -> np.ndarray:
    """x (batch, seq[, F]) with every step past its row's length replaced, in place: features
    by GARBAGE-scaled noise, token ids by other ids inside the vocabulary."""
    pad = np.arange(x.shape[1])[None, :] >= np.asarray(lengths)[:, None]    # (batch, seq)
    if spec.input_kind == "tokens":
        x[pad] = rng.integers(0, spec.input_size, int(pad.sum()))
    else:
        x[pad] = GARBAGE * rng.standard_normal((int(pad.sum()), spec.input_size))
    return x


def model_feeds(spec, rng, batch: int, seq: int, scale: float = 1.0) -> dict:
    """model.*'s feeds: the input, and ragged lengths where the model takes them."""
    feeds = {spec.input_name: sample_input(spec, rng, batch, seq, scale)}
    if spec.takes_lengths:
        feeds[spec.lengths_name] = sample_lengths(rng, batch, seq)
    return feeds
