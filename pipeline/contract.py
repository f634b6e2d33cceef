"""An input array against a model's input contract: one `InputError` line per violation,
naming the file (or request) and what is wrong, e.g. `x.npy: NaN at index (3, 12, 0)`.

    x = check_input(np.load("x.npy"), spec, "x.npy")      # (batch, seq, F) float32
    feeds = check_stream_feeds(dict(np.load("s.npz")), spec, "s.npz")

Used by predict (its files), score (rows.py, .npz lengths) and the stream checks
(verify_stream, export's self-check): the graph itself cannot refuse a bad length or a NaN.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .specs import ModelSpec


def _first_bad(x: np.ndarray) -> tuple[int, ...] | None:
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(np.argmax(bad), x.shape))  # C order


def check_input(x: np.ndarray, spec: ModelSpec, where: str) -> np.ndarray:
    """Enforce the input policy on `x`; return it as a contiguous (batch, seq, features) array
    of the spec's dtype (int64 (batch, seq) ids for a token model: `check_tokens`). `where`
    prefixes every message (the file name)."""
    if spec.input_kind == "tokens":
        return check_tokens(x, spec, where)
    if x.ndim != 3:
        raise InputError(f"{where}: shape {x.shape} has rank {x.ndim}; model {spec.name} expects "
                         f"rank 3 (batch, seq, features={spec.input_size})")
    batch, seq, features = x.shape
    if batch < 1 or seq < 1:
        raise InputError(f"{where}: shape {x.shape} is empty; batch and seq must be >= 1")
    if features != spec.input_size:
        raise InputError(f"{where}: feature size {features}, model {spec.name} expects "
                         f"{spec.input_size}")
    target = np.dtype(spec.dtype)
    native = x.dtype.newbyteorder("=")               # a big-endian '>f4' is float32 too
    if native not in (target, np.dtype(np.float64)):
        raise InputError(f"{where}: dtype {x.dtype}; model {spec.name} takes {target} "
                         f"(float64 is converted, other dtypes are refused)")
    if (at := _first_bad(x)) is not None:
        value = x[at]
        kind = "NaN" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")
        raise InputError(f"{where}: {kind} at index {at}")
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(x, dtype=target)
    if (at := _first_bad(converted)) is not None:   # finite float64 beyond float32's range
        raise InputError(f"{where}: value {x[at]:.6g} at index {at} overflows {target}")
    return converted


def check_tokens(x: np.ndarray, spec: ModelSpec, where: str) -> np.ndarray:
    """Token ids: an integer (batch, seq) array, every id in 0..vocab-1 (an id outside the
    embedding's table is an error in some runtimes and garbage in others)."""
    if x.ndim != 2:
        raise InputError(f"{where}: shape {x.shape} has rank {x.ndim}; model {spec.name} expects "
                         f"token ids of rank 2 (batch, seq)")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(f"{where}: shape {x.shape} is empty; batch and seq must be >= 1")
    if x.dtype.kind not in "iu":
        raise InputError(f"{where}: dtype {x.dtype}; model {spec.name} takes integer token ids")
    if (bad := np.argwhere((x < 0) | (x >= spec.input_size))).size:
        at = tuple(int(i) for i in bad[0])
        raise InputError(f"{where}: token id {x[at]} at index {at} is outside the vocabulary "
                         f"0..{spec.input_size - 1}")
    return np.ascontiguousarray(x, dtype=np.int64)


def check_stream_feeds(feeds: dict, spec: ModelSpec, where: str) -> dict[str, np.ndarray]:
    """Enforce the stream contract (spec.stream_inputs) on {name: array}; return the feeds
    converted (input as `check_input`, lengths int64, states in the spec's dtype, zeros
    where absent: a new stream).

    The graph itself cannot refuse a bad length (a 0 would gather index -1, the last step),
    so every caller of a stream artifact passes here first: InputError, never a number."""
    x_spec, len_spec, *state_specs = spec.stream_inputs
    if x_spec.name not in feeds or len_spec.name not in feeds:
        optional = " and ".join(repr(t.name) for t in state_specs)
        raise InputError(f"{where}: needs arrays {x_spec.name!r} and {len_spec.name!r} "
                         f"(and optionally {optional}); got {sorted(feeds)}")
    x = check_input(np.asarray(feeds[x_spec.name]), spec, where)   # (batch, seq[, F])
    batch, seq = x.shape[:2]
    lengths = check_lengths(np.asarray(feeds[len_spec.name]), batch, seq, where, len_spec.name)
    checked = {x_spec.name: x, len_spec.name: lengths}
    for t in state_specs:
        shape = (batch, *t.shape[1:])                  # (batch, [layers,] hidden)
        state = feeds.get(t.name)
        state = np.zeros(shape, np.dtype(t.dtype)) if state is None else np.asarray(state)
        if state.shape != shape:
            layers = "layers, " if len(shape) == 3 else ""
            raise InputError(f"{where}: {t.name} has shape {state.shape}; the model takes "
                             f"{shape}: (batch as the input's, {layers}hidden size)")
        if state.dtype.kind != "f":
            raise InputError(f"{where}: {t.name} dtype {state.dtype}; give {t.dtype}")
        if (at := _first_bad(state)) is not None:
            raise InputError(f"{where}: {t.name} is not finite at index {at}")
        checked[t.name] = np.ascontiguousarray(state, dtype=np.dtype(t.dtype))
    return checked


def check_lengths(lengths: np.ndarray, batch: int, seq: int, where: str,
                  name: str = "lengths", low: int = 1) -> np.ndarray:
    """One integer length per row of a padded (batch, seq, F) input, each in low..seq;
    returned as int64 (`score` reads .npz files with low=0: an empty row, rejected alone)."""
    if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
        raise InputError(f"{where}: {name} is {lengths.dtype} {lengths.shape}; the "
                         f"model takes one integer length per input row: shape ({batch},)")
    if (bad := np.flatnonzero((lengths < low) | (lengths > seq))).size:
        raise InputError(f"{where}: {name}[{bad[0]}] = {lengths[bad[0]]} is out of "
                         f"range; every length must be in {low}..{seq} (the input's seq)")
    return lengths.astype(np.int64)
