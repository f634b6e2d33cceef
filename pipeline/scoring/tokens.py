"""The per-row check of a token model's rows (a chain starting with an Embedding): the
sequence column is list<int> (large_list too; any integer type), one id per step.

    >>> checked = check_token_batch(batch, spec)       # rows.Checked, one "feature" per step

A row is rejected when its sequence is null or empty, or holds a null id or an id outside
the vocabulary 0..V-1 (an id past the embedding's table is an error in some runtimes and
garbage in others); the whole batch when the column is not a list of integers.
"""
from __future__ import annotations

import numpy as np

from ..specs import ModelSpec
from .rows import Checked, _firsts, _nulls, _owner, _split, list_offsets, mark_ids


def check_token_batch(batch, spec: ModelSpec, id_column: str = "id",
                      sequence_column: str = "sequence", repeated=None) -> Checked:
    import pyarrow as pa

    ids, col = batch.column(id_column), batch.column(sequence_column)
    n, vocab = len(batch), spec.input_size
    reasons = np.full(n, None, dtype=object)

    def mark(mask, reason):                          # the first reason found wins
        for i in np.flatnonzero(mask & np.equal(reasons, None)):
            reasons[i] = reason(i) if callable(reason) else reason

    mark_ids(ids, repeated, mark)
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or \
            not pa.types.is_integer(t.value_type):
        mark(np.ones(n, bool), f"{sequence_column} is {t}, not a list of integer token ids")
        return _split(ids, reasons, np.zeros(0, np.int64), np.zeros(n, np.int64),
                      np.zeros(n, np.int64))
    mark(_nulls(col), "null sequence")
    off = list_offsets(col)                          # (n+1,) id index of each row's start
    mark(np.diff(off) == 0, "empty sequence")
    values = col.values
    raw = values.to_numpy(zero_copy_only=False)
    nulls = _nulls(values)
    ids64 = np.where(nulls, 0, raw).astype(np.int64)
    bad = np.flatnonzero(nulls | (ids64 < 0) | (ids64 >= vocab))
    if bad.size:
        for i, e in zip(*_firsts(_owner(off[:-1], bad, off[1:]), bad)):
            what = "null token id" if nulls[e] else \
                f"token id {ids64[e]} outside the vocabulary 0..{vocab - 1}"
            mark(np.arange(n) == i, f"{what} at step {int(e - off[i])}")
    return _split(ids, reasons, ids64, np.diff(off), off[:-1])
