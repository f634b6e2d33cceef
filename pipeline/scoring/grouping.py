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
`max_group` rows runs at once. Memory: `capacity` rows x their steps x features floats, at
most ~2x while a group is stacked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
class _Buffer:
    ids: list = field(default_factory=list)      # pa.Arrays
    xs: list = field(default_factory=list)       # (k, length, features) arrays
    rows: int = 0


class LengthPool:
    """Rows by length, released as exact-length groups; holds at most ~`capacity` rows."""

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
        cuts = np.flatnonzero(np.diff(lengths[order])) + 1
        for idx in np.split(order, cuts):                           # rows of one length
            length = int(lengths[idx[0]])
            x = _gather(checked.values, checked.starts[idx], length, self.features)
            buffer = self.buffers.setdefault(length, _Buffer())
            buffer.ids.append(take(checked.ids, idx))
            buffer.xs.append(x)
            buffer.rows += len(idx)
            self.rows += len(idx)
            if buffer.rows >= self.max_group:
                yield from self._release(length)
        if self.rows > self.capacity:
            # the lengths holding the most floats first, until half the pool is free
            for length in sorted(self.buffers, key=lambda k: -k * self.buffers[k].rows):
                if self.rows <= self.capacity // 2:
                    break
                yield from self._release(length)

    def drain(self) -> Iterator[Group]:
        for length in sorted(self.buffers):
            yield from self._release(length)

    def _release(self, length: int) -> Iterator[Group]:
        import pyarrow as pa
        buffer = self.buffers.pop(length)
        self.rows -= buffer.rows
        x = buffer.xs[0] if len(buffer.xs) == 1 else np.concatenate(buffer.xs)
        ids = pa.concat_arrays(buffer.ids)
        del buffer
        for lo in range(0, len(x), self.max_group):
            yield Group(length, ids[lo:lo + self.max_group], x[lo:lo + self.max_group])


def _gather(values: np.ndarray, starts: np.ndarray, length: int, features: int) -> np.ndarray:
    """(rows, length, F) from flat `values`, row i's floats at starts[i] on: each row from
    its own start, never from arithmetic over the batch, where a rejected row of any
    length or feature count may lie between good ones (issue 25)."""
    if not (starts % features).any():    # the common case: index whole steps, F x fewer indices
        # each step one opaque item of F values: one copy per index (~15% faster than axis=0)
        step = np.dtype((np.void, values.itemsize * features))
        steps = np.ascontiguousarray(values[:values.size // features * features]).view(step)
        x = np.take(steps, starts[:, None] // features + np.arange(length))   # (rows, length)
        return x.view(values.dtype).reshape(len(starts), length, features)
    gather = starts[:, None] + np.arange(length * features)            # (rows, length * F)
    return np.take(values, gather).reshape(len(starts), length, features)


def step_width(spec) -> int:
    """Values per step in a checked row: the features, or one token id."""
    return 1 if spec.input_kind == "tokens" else spec.input_size


def run_group(runner: "Runner", group: Group) -> np.ndarray:
    """The runner on one exact-length group: (rows, length, F) -> (rows, outputs) float32,
    or (rows, length, outputs) for a per-step model. A token model gets (rows, length) ids;
    a packed forward gets every row's length (all equal in a group)."""
    spec = runner.spec
    rows = len(group.x)
    feeds = {spec.input_name: group.x.reshape(rows, group.length) if
             spec.input_kind == "tokens" else group.x}
    if spec.takes_lengths:
        feeds[spec.lengths_name] = np.full(rows, group.length, np.int64)
    y = runner.run(feeds)[spec.output_name]
    steps = (group.length,) if len(spec.output.shape) == 3 else ()
    return np.asarray(y, dtype=np.float32).reshape(rows, *steps, spec.output_size)


def group_batch(checked: "Checked", features: int) -> Iterator[Group]:
    """One batch's rows as exact-length groups, nothing kept (the Ray actors' form)."""
    pool = LengthPool(features, capacity=len(checked.lengths) + 1)
    yield from pool.add(checked)
    yield from pool.drain()
