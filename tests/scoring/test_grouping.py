"""LengthPool: exact-length groups, every row exactly once, memory held to its capacity."""
import numpy as np
import pyarrow as pa

from pipeline.scoring.rows import Checked
from pipeline.scoring.grouping import LengthPool, group_batch


def checked(lengths, features=3, first_id=0):
    """A Checked batch whose row i holds the value id + step / 1000 everywhere."""
    lengths = np.asarray(lengths, np.int64)
    ids = np.arange(first_id, first_id + len(lengths))
    values = np.concatenate([np.repeat(i + np.arange(k) / 1000, features)
                             for i, k in zip(ids, lengths)]).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * features
    return Checked(pa.array(ids), lengths, starts, values, pa.array(ids[:0]), [])


def test_groups_are_exact_lengths_and_rows_come_out_once_whole():
    rng = np.random.default_rng(0)
    pool, seen = LengthPool(features=3, capacity=50, max_group=16), []
    batches = [checked(rng.integers(1, 12, 40), first_id=40 * b) for b in range(6)]
    for batch in batches:
        groups = list(pool.add(batch))
        assert pool.rows <= 50 + 40        # at most its capacity and the batch just added
        seen += groups
    seen += list(pool.drain())
    assert pool.rows == 0 and not pool.buffers
    ids = np.concatenate([g.ids.to_numpy() for g in seen])
    assert sorted(ids) == list(range(240))
    for g in seen:
        assert g.x.shape[1:] == (g.length, 3) and len(g.x) == len(g.ids) <= 16
        for row, i in zip(g.x, g.ids.to_numpy()):      # each row's own steps, in order
            np.testing.assert_allclose(row[:, 0], i + np.arange(g.length) / 1000, rtol=1e-6)


def test_a_full_length_runs_at_once_and_the_pool_frees_half_when_full():
    pool = LengthPool(features=3, capacity=20, max_group=8)
    groups = list(pool.add(checked([5] * 8 + [2] * 3)))
    assert [(g.length, len(g.ids)) for g in groups] == [(5, 8)] and pool.rows == 3
    groups = list(pool.add(checked([7] * 12 + [3] * 6, first_id=100)))
    # 21 rows > 20: the lengths with the most floats go first (7 x 4 rows left after a
    # full group of 8, then 3 x 6) until at most 10 rows wait
    assert pool.rows <= 10
    assert sum(len(g.ids) for g in groups) == 21 - pool.rows


def test_group_batch_keeps_nothing():
    groups = list(group_batch(checked([1, 3, 3, 2, 1]), features=3))
    assert sorted((g.length, len(g.ids)) for g in groups) == [(1, 2), (2, 1), (3, 2)]
