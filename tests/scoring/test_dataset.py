"""Reading and the per-row check: each kind of bad row gets its reason, good rows their
exact values; file-level problems are one InputError line."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.scoring.dataset import input_files, open_dataset
from pipeline.scoring.rows import check_batch
from pipeline.specs import SPECS

SPEC = SPECS["classifier"]       # only its sizes are used here: F = 5


def batch(rows, ids=None, inner=None, value=pa.float32()):
    inner = inner or pa.list_(value, SPEC.input_size)
    ids = list(range(len(rows))) if ids is None else ids
    return pa.record_batch([pa.array(ids), pa.array(rows, pa.list_(inner))],
                           names=["id", "sequence"])


def good_row(k, start=0.0):
    return [[start + t + f / 10 for f in range(SPEC.input_size)] for t in range(k)]


def rows_of(c):
    """The good rows' (steps, F) arrays, as the check laid them out."""
    return [c.values[s:s + k * SPEC.input_size].reshape(k, SPEC.input_size)
            for s, k in zip(c.starts, c.lengths)]


@pytest.mark.parametrize("inner", [None, pa.list_(pa.float32()), pa.large_list(pa.float64())])
def test_good_rows_keep_their_values_and_ids(inner):
    rows = [good_row(3), good_row(1, 100), good_row(2, 200)]
    c = check_batch(batch(rows, ids=["a", "b", "c"], inner=inner).slice(1), SPEC)
    assert c.ids.to_pylist() == ["b", "c"] and c.bad_reasons == []
    assert c.values.dtype == np.float32
    for got, want in zip(rows_of(c), rows[1:]):
        np.testing.assert_array_equal(got, np.array(want, np.float32))


def test_each_bad_row_has_its_reason_and_the_good_ones_survive():
    nan_row, inf_row = good_row(3), good_row(2)
    nan_row[2][1] = float("nan")
    inf_row[1][4] = float("-inf")
    null_value = good_row(2)
    null_value[0][3] = None
    rows = [good_row(2), None, [], nan_row, inf_row, [good_row(1)[0], None], null_value,
            [[1.0, 2.0]], good_row(4)]
    c = check_batch(batch(rows, inner=pa.list_(pa.float32())), SPEC)
    assert c.ids.to_pylist() == [0, 8]
    assert c.bad_ids.to_pylist() == [1, 2, 3, 4, 5, 6, 7]
    assert c.bad_reasons == ["null sequence", "empty sequence", "NaN at step 2, feature 1",
                             "-Inf at step 1, feature 4", "null step",
                             "null value at step 0, feature 3",
                             "step 0 has 2 features, model classifier expects 5"]
    for got, want in zip(rows_of(c), [rows[0], rows[8]]):
        np.testing.assert_array_equal(got, np.array(want, np.float32))


def test_float64_beyond_float32_and_a_wrong_fixed_width_or_type_reject_rows():
    big = good_row(2)
    big[1][0] = 1e300
    c = check_batch(batch([good_row(1), big], value=pa.float64()), SPEC)
    assert c.bad_reasons == ["value 1e+300 overflows float32 at step 1, feature 0"]
    c = check_batch(batch([[[1.0, 2.0]]], inner=pa.list_(pa.float32(), 2)), SPEC)
    assert c.bad_reasons == ["steps have 2 features, model classifier expects 5"]
    flat = pa.record_batch([pa.array([7, 8]), pa.array([[1.0], [2.0]])], names=["id", "sequence"])
    c = check_batch(flat, SPEC)
    assert c.bad_ids.to_pylist() == [7, 8]
    assert c.bad_reasons[0] == "sequence is list<item: double>, not a list of lists of floats"
    ints = batch([[[1] * 5]], inner=pa.list_(pa.int64(), 5))
    assert "not a list of lists of floats" in check_batch(ints, SPEC).bad_reasons[0]


def test_files_and_columns_are_checked_before_reading(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        input_files(tmp_path / "missing.parquet")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(InputError, match="unsupported file type '.csv'"):
        input_files(tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder holds no .parquet file"):
        input_files(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="bad.parquet: not a readable Parquet file"):
        open_dataset(tmp_path / "bad.parquet", SPEC)
    pq.write_table(pa.table({"key": [1], "sequence": [[[0.0] * 5]]}), tmp_path / "k.parquet")
    with pytest.raises(InputError, match="has no column 'ident'; columns: key, sequence"):
        open_dataset(tmp_path / "k.parquet", SPEC, id_column="ident")
    data = open_dataset(tmp_path / "k.parquet", SPEC, id_column="key")
    assert data.rows == 1 and data.id_type == pa.int64()


def test_npz_rows_are_trimmed_to_their_lengths(tmp_path):
    x = np.full((3, 4, SPEC.input_size), np.nan, np.float32)       # NaN padding is never read
    x[0, :4], x[1, :1], x[2, :2] = 1.0, 2.0, 3.0
    np.savez(tmp_path / "d.npz", input=x, lengths=np.array([4, 1, 0]), id=np.array([9, 8, 7]))
    data = open_dataset(tmp_path / "d.npz", SPEC)
    (b,) = data.batches(10, SPEC)
    c = check_batch(b, SPEC)
    assert c.ids.to_pylist() == [9, 8] and c.lengths.tolist() == [4, 1]
    assert c.bad_ids.to_pylist() == [7] and c.bad_reasons == ["empty sequence"]
    assert [r[0, 0] for r in rows_of(c)] == [1.0, 2.0]


@pytest.mark.parametrize("arrays, message", [
    (dict(input=np.zeros((2, 3, 5)), lengths=np.array([1, 4])),
     r"lengths\[1\] = 4 is out of range; every length must be in 0..3"),
    (dict(input=np.zeros((2, 3, 4)), lengths=np.array([1, 1])), r"takes \(batch, seq, 5\)"),
    (dict(input=np.zeros((2, 3, 5), np.int32), lengths=np.array([1, 1])), "dtype int32"),
    (dict(input=np.zeros((2, 3, 5)), lengths=np.array([1.0, 1.0])), "lengths is float64"),
    (dict(input=np.zeros((2, 3, 5))), "holds arrays"),
    (dict(input=np.zeros((2, 3, 5)), lengths=np.array([1, 1]), id=np.zeros(3)), "id is float64"),
])
def test_npz_layout_errors_are_one_line(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        open_dataset(tmp_path / "d.npz", SPEC)
