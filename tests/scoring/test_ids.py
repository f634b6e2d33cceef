"""Repeated ids and id takes on score's numpy path (integer ids, no pyarrow.compute) against
plain Python counting and indexing, with nulls, several chunks and sliced chunks."""
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.scoring.dataset import Dataset
from pipeline.scoring.ids import repeated_ids
from pipeline.scoring.rows import take


def dataset(tmp_path: Path, chunks, id_type) -> Dataset:
    """A Parquet file holding `chunks` (lists of ids, None for null) as its row groups."""
    import pyarrow.parquet as pq
    path = tmp_path / "ids.parquet"
    with pq.ParquetWriter(path, pa.schema([("id", id_type)])) as writer:
        for chunk in chunks:
            writer.write_table(pa.table({"id": pa.array(chunk, id_type)}))
    return Dataset((path,), "id", "sequence", id_type, sum(map(len, chunks)))


@pytest.mark.parametrize("id_type", [pa.int64(), pa.int32(), pa.uint8(), pa.string()])
def test_repeated_ids_are_those_python_counts_more_than_once(tmp_path, id_type):
    rng = np.random.default_rng(3)
    chunks = [[None if rng.random() < 0.1 else int(v) for v in rng.integers(0, 200, n)]
              for n in (150, 1, 90)]
    if id_type == pa.string():
        chunks = [[None if v is None else f"u{v}" for v in c] for c in chunks]
    want = {v for v, n in Counter(v for c in chunks for v in c if v is not None).items()
            if n > 1}
    got = repeated_ids(dataset(tmp_path, chunks, id_type), spec=None)
    assert got.type == id_type and got.null_count == 0
    assert sorted(got.to_pylist()) == sorted(want) and len(got) == len(want)


def test_no_repeat_and_all_null_ids(tmp_path):
    assert len(repeated_ids(dataset(tmp_path, [[3, 1, 2], [7]], pa.int64()), None)) == 0
    assert len(repeated_ids(dataset(tmp_path, [[None, None]], pa.int64()), None)) == 0


@pytest.mark.parametrize("values", [
    pa.array(np.arange(100, 140), pa.int64()),
    pa.array(np.arange(40, dtype=np.float32) / 3),
    pa.array(np.arange(100, 140), pa.int16()).slice(5, 20),      # a view with an offset
    pa.array([f"r{i}" for i in range(30)]),                     # Arrow's own take
    pa.array([1, None, 3, 4, None, 6], pa.int64()),              # nulls: Arrow's own take
])
def test_take_equals_python_indexing(values):
    idx = np.array([3, 0, 0, len(values) - 1, 2])
    got = take(values, idx)
    assert got.type == values.type
    assert got.to_pylist() == [values.to_pylist()[i] for i in idx]
