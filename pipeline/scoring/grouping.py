"""How rows become model calls: exact-length groups through `model.*`, from a bounded pool.

    >>> pool = LengthPool(features=5, capacity=16384)
    >>> for group in pool.add(checked):              # a rows.Checked batch
    ...     y = run_group(runner, group)              # (rows, outputs)
    >>> for group in pool.drain(): ...                # at the end of the input

Why exact lengths: every row of a call then has the same number of steps, so the plain
artifact (model.onnx, model.pt, any runtime, any recurrent architecture) answers each row as
it would alone; no padding, no masking. Measured on main 64f213c (issue 18, one thread,
ORT): exact-length groups through model.onnx (its If takes the Scan branch above batch
~12) ran 170k / 99.5k rows/s (classifier / forecaster) against 51k / 20.6k for padded
buckets of 512 through model_stream.onnx with `lengths`, whose RNN op costs ~75 / ~200 ns
per row and step at any batch, where the Scan costs ~9-15 / ~21-26 ns at batch 64-512
(seq 150, one thread, measured for this module; table in docs/scoring.md). So the stream
artifact is not used: no state tensors to handle per architecture, and a model without one
(a bidirectional one) scores the same way.

What bounds memory and sets the speed: rows wait in the pool, one buffer per length,
until a call is worth it. Call cost per row falls with the group's rows (fixed dispatch per
Scan step shared by more rows), so the pool keeps as many rows as `capacity` allows; when
full it runs the lengths holding the most values until half of it is free, so lengths that
are still filling wait for more rows of their length. A length whose buffer reaches
`max_group` rows runs at once. Memory: `capacity` rows x their steps x features floats
(plus the batch just read), held in the batches Arrow decoded them into until the pool next
frees half of itself, gathered then; ~2x while a group is stacked. Each row is copied once
on its way to the model (twice if it waits past a half-free), one memcpy per row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from ..runtimes import Runner
    from .rows import Checked

# Rows in one model call, at most: past ~256 rows the Scan's cost per row no longer falls
# (measured), and 4096 bounds the Scan's (seq, H, batch) projection at a few MB per call.
MAX_GROUP = 4096


@dataclass
class Group:
    length: int
    ids: "pa.Array"          # (rows,)
    x: np.ndarray            # (rows, length, features) float32 (int64 ids: features 1)


@dataclass
class _Piece:
    """Rows of one length: still in their batch's flat `values` (from row i's float at
    starts[i] on), or already gathered as `x` (rows, length, features)."""
    ids: "pa.Array"
    values: np.ndarray | None = None
    starts: np.ndarray | None = None
    x: np.ndarray | None = None


@dataclass
class _Buffer:
    pieces: list = field(default_factory=list)   # _Pieces, oldest first
    rows: int = 0


class LengthPool:
    """Rows by length, released as exact-length groups; holds at most ~`capacity` rows.

    A row is copied once, when its group is released: until then it stays where Arrow
    decoded it (a piece of its batch). Rows still waiting when the pool frees half of itself
    are gathered then, so no batch outlives that point: memory stays ~2x `capacity` rows
    whatever the file's size (a copy per row on add and another on release cost ~0.03 s of
    a 20k-row run, issue 23)."""

    def __init__(self, features: int, capacity: int, max_group: int = MAX_GROUP):
        self.features, self.capacity, self.max_group = features, max(1, capacity), max_group
        self.buffers: dict[int, _Buffer] = {}
        self.rows = 0

    def add(self, checked: "Checked") -> Iterator[Group]:
        """Take a batch's good rows; yield the groups that are due."""
        from .rows import take
        lengths = checked.lengths
        if not len(lengths):
            return
        order = np.argsort(lengths, kind="stable")                 # (n,) rows by length
        ids, starts, sorted_lengths = take(checked.ids, order), checked.starts[order], \
            lengths[order]
        cuts = np.flatnonzero(np.diff(sorted_lengths)).tolist()
        for lo, hi in zip([0, *(c + 1 for c in cuts)], [*(c + 1 for c in cuts), len(order)]):
            length = int(sorted_lengths[lo])                        # rows lo:hi, one length
            buffer = self.buffers.setdefault(length, _Buffer())
            buffer.pieces.append(_Piece(ids[lo:hi], checked.values, starts[lo:hi]))
            buffer.rows += hi - lo
            self.rows += hi - lo
            if buffer.rows >= self.max_group:
                yield from self._release(length)
        if self.rows > self.capacity:
            # the lengths holding the most floats first, until half the pool is free
            for length in sorted(self.buffers, key=lambda k: -k * self.buffers[k].rows):
                if self.rows <= self.capacity // 2:
                    break
                yield from self._release(length)
            for length, buffer in self.buffers.items():     # the rest let their batches go
                raw = [piece for piece in buffer.pieces if piece.x is None]
                if raw:       # gathered pieces stay as they are: no row is copied twice here
                    buffer.pieces = [piece for piece in buffer.pieces if piece.x is not None]
                    buffer.pieces.append(self._gathered(length, raw))

    def drain(self) -> Iterator[Group]:
        for length in sorted(self.buffers):
            yield from self._release(length)

    def _gathered(self, length: int, pieces: list) -> _Piece:
        """`pieces` of one length as one (rows, length, features) array, copied once."""
        import pyarrow as pa
        if len(pieces) == 1:
            piece = pieces[0]
            return piece if piece.x is not None else _Piece(piece.ids, x=_gather(
                piece.values, piece.starts, length, self.features))
        x = np.empty((sum(len(piece.ids) for piece in pieces), length, self.features),
                     pieces[0].values.dtype if pieces[0].x is None else pieces[0].x.dtype)
        at = 0
        for piece in pieces:         # a piece's rows are a few hundred kB: copied in cache
            rows = len(piece.ids)
            x[at:at + rows] = piece.x if piece.x is not None else _gather(
                piece.values, piece.starts, length, self.features)
            at += rows
        return _Piece(pa.concat_arrays([piece.ids for piece in pieces]), x=x)

    def _release(self, length: int) -> Iterator[Group]:
        buffer = self.buffers.pop(length)
        self.rows -= buffer.rows
        piece = self._gathered(length, buffer.pieces)
        del buffer
        ids, x = piece.ids, piece.x
        for lo in range(0, len(x), self.max_group):
            yield Group(length, ids[lo:lo + self.max_group], x[lo:lo + self.max_group])


def _gather(values: np.ndarray, starts: np.ndarray, length: int, features: int) -> np.ndarray:
    """(rows, length, F) from flat `values`, row i's floats at starts[i] on: each row from
    its own start, never from arithmetic over the batch, where a rejected row of any
    length or feature count may lie between good ones (issue 25).

    How: `values` seen as overlapping windows, one opaque item of a whole row (length x F
    values) starting at every value, so picking the rows is one copy per row, with no
    (rows, length) index array built (~3x faster than np.take of steps, measured for
    issue 23). np.ndarray checks that the last window ends inside `values`. (Indexing, not
    np.take, which would first copy the overlapping windows into one array.)"""
    values = np.ascontiguousarray(values)
    row = np.dtype((np.void, values.itemsize * length * features))
    windows = np.ndarray((values.size - length * features + 1,), row, values,
                         strides=(values.itemsize,))                     # (values - row + 1,)
    return windows[starts].view(values.dtype).reshape(len(starts), length, features)


def step_width(spec) -> int:
    """Values per step in a checked row: the features, or one token id."""
    return 1 if spec.input_kind == "tokens" else spec.input_size


@lru_cache(maxsize=8)
def _plan(spec) -> tuple:
    """What run_group needs of the spec, worked out once per model: its chain is rebuilt
    by every property that reads it (~10 µs a call, 300+ calls a run)."""
    per_step = len(spec.output.shape) == 3
    return (spec.input_name, spec.input_kind == "tokens",
            spec.lengths_name if spec.takes_lengths else None, spec.output_name, per_step,
            spec.output_size)


def run_group(runner: "Runner", group: Group) -> np.ndarray:
    """The runner on one exact-length group: (rows, length, F) -> (rows, outputs) float32,
    or (rows, length, outputs) for a per-step model. A token model gets (rows, length) ids;
    a packed forward gets every row's length (all equal in a group)."""
    input_name, tokens, lengths_name, output_name, per_step, outputs = _plan(runner.spec)
    rows = len(group.x)
    feeds = {input_name: group.x.reshape(rows, group.length) if tokens else group.x}
    if lengths_name is not None:
        feeds[lengths_name] = np.full(rows, group.length, np.int64)
    y = runner.run(feeds)[output_name]
    steps = (group.length,) if per_step else ()
    return np.asarray(y, dtype=np.float32).reshape(rows, *steps, outputs)


def group_batch(checked: "Checked", features: int) -> Iterator[Group]:
    """One batch's rows as exact-length groups, nothing kept (the Ray actors' form)."""
    pool = LengthPool(features, capacity=len(checked.lengths) + 1)
    yield from pool.add(checked)
    yield from pool.drain()
