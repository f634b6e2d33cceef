"""The per-row check: one Arrow batch of (id, sequence) rows -> good rows laid out for the
model, and rejects with a one-line reason each.

    >>> checked = check_batch(batch, spec)             # a pyarrow RecordBatch
    >>> checked.values[checked.starts[0]:][:checked.lengths[0] * spec.input_size]   # row 0

A row is rejected when its id is null or repeated (ids.py), its sequence is null, empty, not a list of lists of floats (the
column's type; then every row of that batch), has a null step, a step of the wrong feature
count, a null value, NaN/Inf, or a float64 value beyond float32; the first reason found
wins. Good rows keep their floats where Arrow decoded them (float32 is not copied).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..specs import ModelSpec

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class Checked:
    """One batch's good rows, row i = values[starts[i]: starts[i] + lengths[i] * F]."""
    ids: "pa.Array"             # (n,) good rows' ids
    lengths: np.ndarray         # (n,) int64 steps, >= 1
    starts: np.ndarray          # (n,) int64 offset of each row's first float in values
    values: np.ndarray          # flat float32, C-contiguous
    bad_ids: "pa.Array"         # rejected rows' ids, in batch order
    bad_reasons: list[str]


def check_batch(batch: "pa.RecordBatch", spec: ModelSpec, id_column: str = "id",
                sequence_column: str = "sequence", repeated: "pa.Array | None" = None
                ) -> Checked:
    """Split `batch` into good rows (flat float32 values) and rejects (id, reason); rows
    whose id is null or among `repeated` (ids.repeated_ids) are rejected first. A token
    model's rows are checked by tokens.py (flat int64 ids)."""
    import pyarrow as pa

    if spec.input_kind == "tokens":
        from .tokens import check_token_batch
        return check_token_batch(batch, spec, id_column, sequence_column, repeated)

    ids, col = batch.column(id_column), batch.column(sequence_column)
    n, features = len(batch), spec.input_size
    reasons = np.full(n, None, dtype=object)         # None: good so far

    def mark(mask: np.ndarray, reason) -> None:      # the first reason found for a row wins
        for i in np.flatnonzero(mask & np.equal(reasons, None)):
            reasons[i] = reason(i) if callable(reason) else reason

    mark_ids(ids, repeated, mark)
    t = col.type
    inner_t = t.value_type if _is_list(t) else None
    if inner_t is None or not _is_list(inner_t) or inner_t.value_type not in (
            pa.float32(), pa.float64()):
        mark(np.ones(n, bool), f"{sequence_column} is {t}, not a list of lists of floats")
        return _split(ids, reasons, np.zeros(0, np.float32), np.zeros(n, np.int64),
                      np.zeros(n, np.int64))
    mark(_nulls(col), "null sequence")
    off = list_offsets(col)                              # (n+1,) step index of each row's start
    nsteps = np.diff(off)
    mark(nsteps == 0, "empty sequence")
    steps = col.values                               # every step, (total steps,) lists
    null_steps = _nulls(steps)
    if null_steps.any():
        rows = _owner(off, np.flatnonzero(null_steps))
        mark(np.isin(np.arange(n), rows), "null step")
    if pa.types.is_fixed_size_list(inner_t):
        if inner_t.list_size != features:
            mark(np.ones(n, bool), f"steps have {inner_t.list_size} features, model "
                                   f"{spec.name} expects {features}")
        # step k's floats start at (steps.offset + k) * size in the unsliced child
        starts = (steps.offset + off[:-1]) * inner_t.list_size
        ends = (steps.offset + off[1:]) * inner_t.list_size
    else:
        step_start = list_offsets(steps)                 # (steps+1,) float index of each step
        wrong = np.diff(step_start) != features      # (steps,)
        step_row = _owner(off, np.flatnonzero(wrong))
        first = {}
        for k, row in zip(np.flatnonzero(wrong), step_row):
            first.setdefault(row, k)
        mark(np.isin(np.arange(n), list(first)), lambda i: (
            f"step {first[i] - off[i]} has {step_start[first[i] + 1] - step_start[first[i]]} "
            f"features, model {spec.name} expects {features}"))
        starts, ends = step_start[off[:-1]], step_start[off[1:]]
    floats = steps.values
    if floats.null_count:
        raw = floats.to_numpy(zero_copy_only=False)  # nulls read as NaN, told apart below
    else:                                            # a view of Arrow's buffer, no copy
        dtype = np.dtype(np.float32 if floats.type == pa.float32() else np.float64)
        raw = np.frombuffer(floats.buffers()[1], dtype=dtype, count=len(floats),
                            offset=floats.offset * dtype.itemsize)
    with np.errstate(over="ignore"):
        values = raw.astype(np.float32, copy=False)
        # a NaN or Inf makes the sum NaN or Inf, so a finite sum means every value is; a
        # float32 sum of large finite values may overflow, and then the exact search below
        # finds none (float32 pairwise sum: ~2x faster than accumulating in float64, issue 23)
        finite = np.isfinite(values.sum())
    bad = np.zeros(0, np.int64) if finite else np.flatnonzero(~np.isfinite(values))
    if bad.size:
        null_values = _nulls(floats)
        rows = _owner(starts, bad, ends)
        for i, e in zip(*_firsts(rows, bad)):
            step, feature = divmod(int(e - starts[i]), features)
            what = "null value" if null_values[e] else (
                "NaN" if np.isnan(raw[e]) else f"value {raw[e]:.6g} overflows float32"
                if np.isfinite(raw[e]) else ("Inf" if raw[e] > 0 else "-Inf"))
            mark(np.arange(n) == i, f"{what} at step {step}, feature {feature}")
    return _split(ids, reasons, values, nsteps, starts)



def mark_ids(ids: "pa.Array", repeated: "pa.Array | None", mark) -> None:
    """mark(mask, reason) the rows whose id is null, or among `repeated` (ids.py)."""
    mark(_nulls(ids), "null id")
    if repeated is not None and len(repeated):
        import pyarrow.compute as pc
        try:                    # (a later file's ids in the first's type, as written)
            same = pc.is_in(ids.cast(repeated.type), value_set=repeated)
        except (ValueError, TypeError, NotImplementedError):
            same = None         # not castable: output.cast_ids refuses the file in one line
        if same is not None:
            mark(same.to_numpy(zero_copy_only=False) & ~_nulls(ids), "duplicate id")

def arrow(values: np.ndarray) -> "pa.Array":
    """A 1-D numeric numpy array as an Arrow array over the same memory. pa.array() would
    do, but it first asks whether its argument is a pandas object, which imports pandas
    (~0.5-2 s, on the clock of the first batch) wherever Ray Data's extra installed it."""
    import pyarrow as pa
    values = np.ascontiguousarray(values)
    if values.dtype.kind not in "iuf":     # Arrow packs booleans in bits: not this layout
        raise TypeError(f"arrow() takes numbers, not {values.dtype}")
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [None, pa.py_buffer(values)])


def numbers(array: "pa.Array") -> np.ndarray | None:
    """A numeric Arrow array without nulls as a numpy view of its buffer; None for any
    other (strings, nulls, booleans, dates...), which then take Arrow's own path."""
    import pyarrow as pa
    t = array.type
    if array.null_count or not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return None
    dtype = np.dtype(t.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def take(array: "pa.Array", indices: np.ndarray) -> "pa.Array":
    """array[indices] as an Arrow array. Numeric ids (the common case) go through numpy:
    Array.take imports pyarrow.compute, whose start (~0.06-0.1 s CPU, docstrings built for
    every kernel) was a tenth of a 20k-row `score` run (issue 23)."""
    values = numbers(array)
    if values is None:
        return array.take(arrow(indices))
    import pyarrow as pa
    picked = values[indices]
    return pa.Array.from_buffers(array.type, len(picked), [None, pa.py_buffer(picked)])


def _is_list(t) -> bool:
    import pyarrow as pa
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def list_offsets(array) -> np.ndarray:
    """A (large_)list array's (len+1,) offsets as int64, read from its buffer: no copy of
    the values, and none of to_numpy()'s first-call cost (~0.25 s)."""
    import pyarrow as pa
    dtype = np.int64 if pa.types.is_large_list(array.type) else np.int32
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array) + 1,
                         offset=array.offset * np.dtype(dtype).itemsize).astype(np.int64)


def _nulls(array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), bool)
    return array.is_null().to_numpy(zero_copy_only=False)


def _owner(starts: np.ndarray, positions: np.ndarray, ends: np.ndarray | None = None):
    """For each of `positions` (sorted), the index of the range [starts[i], next start)
    holding it; -1 where it falls in none (past `ends`, or before the first start)."""
    owner = np.searchsorted(starts[:-1] if ends is None else starts, positions, "right") - 1
    if ends is not None:
        owner = np.where((owner >= 0) & (positions < ends[np.maximum(owner, 0)]), owner, -1)
    return owner


def _firsts(rows: np.ndarray, positions: np.ndarray):
    """(rows, the first of `positions` in each), rows >= 0 only."""
    keep = rows >= 0
    rows, positions = rows[keep], positions[keep]
    unique, index = np.unique(rows, return_index=True)
    return unique, positions[index]


def _split(ids, reasons: np.ndarray, values, lengths, starts) -> Checked:
    bad = np.not_equal(reasons, None)
    if not bad.any():                                # the common case: nothing to take
        return Checked(ids, lengths.astype(np.int64), starts.astype(np.int64), values,
                       ids[:0], [])
    good = np.flatnonzero(~bad)
    return Checked(ids=take(ids, good), lengths=lengths[good].astype(np.int64),
                   starts=starts[good].astype(np.int64), values=values,
                   bad_ids=take(ids, np.flatnonzero(bad)), bad_reasons=list(reasons[bad]))
