"""Every kind of bad row in both modes, alone and combined (issue 25, rows 1, 2 and 13).

--bad-rows skip: exit 0, scored + rejected = rows read, each bad row in the rejects with its
reason, and every good row's output (and label) equal to the seed class run on that row
alone, batch 1, with the trained weights: an independent reference, so a bad row that
shifts its neighbours' values is caught. --bad-rows fail: one line naming the first bad row
in input order, exit 1, nothing left in the folder.
"""
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from ..test_cli import one_line_error
from .conftest import reference, spec_of

MODEL = "classifier"     # F = 5, two logits


def good(rng, steps, features=5):
    return rng.standard_normal((steps, features)).astype(np.float32).tolist()


def case(name, rng):
    """[(id, row, reason or None)] for one named combination."""
    rows = [(i, good(rng, int(rng.integers(1, 9))), None) for i in range(12)]

    def bad(i, row, reason):
        rows[i] = (rows[i][0], row, reason)

    if name == "counts-cancel":          # 8 + 2 values: a multiple of F between them
        bad(3, [rng.standard_normal(8).tolist()], "step 0 has 8 features")
        bad(7, [rng.standard_normal(2).tolist()], "step 0 has 2 features")
    elif name == "wrong-count":
        bad(5, good(rng, 4, features=6), "step 0 has 6 features")
    elif name == "ragged-in-row":
        bad(5, good(rng, 2) + good(rng, 1, features=4) + good(rng, 2), "step 2 has 4 features")
    elif name == "bad-first":
        bad(0, good(rng, 3, features=3), "step 0 has 3 features")
    elif name == "bad-last":
        bad(11, good(rng, 2) + [[1.0] * 7], "step 2 has 7 features")
    elif name == "every-row-bad":
        for i in range(12):
            bad(i, good(rng, 2, features=1 + i % 4), "features, model classifier expects 5")
    elif name == "bad-in-every-row-group":   # row groups (and batches) of 3 rows
        for i in (1, 4, 8, 9):
            bad(i, good(rng, i % 3 + 1, features=(4, 6, 9)[i % 3]), "features")
        bad(6, good(rng, 2)[:1] + [[float("nan")] * 5], "NaN at step 1, feature 0")
    elif name == "duplicate-ids":
        rows[6] = (rows[2][0], rows[6][1], "duplicate id")
        rows[2] = (rows[2][0], rows[2][1], "duplicate id")
        bad(9, [rng.standard_normal(3).tolist()], "step 0 has 3 features")
    elif name == "null-id":
        rows[4] = (None, rows[4][1], "null id")
    return rows


CASES = ["counts-cancel", "wrong-count", "ragged-in-row", "bad-first", "bad-last",
         "every-row-bad", "bad-in-every-row-group", "duplicate-ids", "null-id"]


def write(path, rows):
    table = pa.table({"id": pa.array([r[0] for r in rows], pa.int64()),
                      "sequence": pa.array([r[1] for r in rows],
                                           pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, path, row_group_size=3)
    return path


def score(out, tmp_path, *args):
    return CliRunner().invoke(cli, ["score", "--model", MODEL, "--input", tmp_path / "x.parquet",
                                    "--output", tmp_path / "y.parquet", "--out", out,
                                    "--batch-size", 3, *map(str, args)])


@pytest.mark.parametrize("name", CASES)
def test_skip_rejects_each_bad_row_and_every_good_row_is_right(out, tmp_path, name):
    rows = case(name, np.random.default_rng(CASES.index(name)))
    write(tmp_path / "x.parquet", rows)
    result = score(out, tmp_path, "--bad-rows", "skip")
    goods = [r for r in rows if r[2] is None]
    assert result.exit_code == 0, result.output
    assert f"scored {len(goods)} rows, rejected {len(rows) - len(goods)}" in result.output
    rejects = pq.read_table(tmp_path / "y.rejects.parquet").to_pylist()
    assert sorted((r["id"] is None, r["id"] or 0) for r in rejects) == sorted(
        (r[0] is None, r[0] or 0) for r in rows if r[2])
    want = {}
    for i, _, reason in rows:
        if reason:
            want.setdefault(i, []).append(reason)
    for r in rejects:
        assert any(w in r["reason"] for w in want[r["id"]]), (r, want[r["id"]])
    table = pq.read_table(tmp_path / "y.parquet").to_pylist()
    assert sorted(r["id"] for r in table) == sorted(r[0] for r in goods)
    by_id = {r["id"]: r for r in table}
    spec = spec_of(out, MODEL)
    tol = spec.tolerance("cpu")
    for i, row, _ in goods:                   # the model on this row alone
        expected = reference(out, MODEL, [np.array(row, np.float32)])[0]     # (O,)
        got = np.array(by_id[i]["output"], np.float32)
        assert np.all(np.abs(got - expected) <= tol.atol + tol.rtol * np.abs(expected)), \
            (i, got, expected)
        assert by_id[i]["label"] == int(expected.argmax())


@pytest.mark.parametrize("name", CASES)
def test_fail_names_the_first_bad_row_and_leaves_nothing(out, tmp_path, name):
    rows = case(name, np.random.default_rng(CASES.index(name)))
    write(tmp_path / "x.parquet", rows)
    result = score(out, tmp_path)
    assert result.exit_code == 1
    first = next(r for r in rows if r[2])
    if name == "duplicate-ids":
        one_line_error(result, f"id {first[0]} appears more than once", "--bad-rows skip")
    else:
        one_line_error(result, f"row with id {first[0]!r}: ", first[2], "--bad-rows skip")
    assert os.listdir(tmp_path) == ["x.parquet"]


def test_a_large_ragged_file_with_bad_rows_scattered_scores_like_row_by_row(out, tmp_path,
                                                                             monkeypatch):
    """2,000 rows of lengths 1-60 in row groups of 300, one in ~40 bad (wrong feature
    count, NaN, null value, empty, a short first step, repeated id), through a pool of 500 rows and output row
    groups of 128 (so rows of one length meet across batches, groups are cut and several
    output row groups are written): every good row equals the seed class on it alone."""
    from pipeline.scoring import output
    monkeypatch.setattr(output, "WRITE_ROWS", 128)
    rng = np.random.default_rng(23)
    rows = [(i, good(rng, int(rng.integers(1, 61))), None) for i in range(2000)]
    for k, i in enumerate(rng.choice(2000, 50, replace=False)):
        row = [list(s) for s in rows[i][1]]
        kind = k % 5
        if kind == 0:
            row[-1] = row[-1] + [0.5]
        elif kind == 1:
            row[0][k % 5] = float("nan")
        elif kind == 2:
            row[-1][0] = None
        elif kind == 3:
            row = []
        else:
            row[0] = row[0][:3]
        rows[i] = (rows[i][0], row, "bad")
    twins = [i for i in range(2000) if rows[i][2] is None][:2]      # one id, two rows
    rows[twins[1]] = (rows[twins[0]][0], rows[twins[1]][1], "bad")
    rows[twins[0]] = (*rows[twins[0]][:2], "bad")
    table = pa.table({"id": pa.array([r[0] for r in rows], pa.int64()),
                      "sequence": pa.array([r[1] for r in rows],
                                           pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=300)
    result = score(out, tmp_path, "--bad-rows", "skip", "--batch-size", 500)
    assert result.exit_code == 0, result.output
    goods = [r for r in rows if r[2] is None]
    assert f"scored {len(goods):,} rows, rejected {len(rows) - len(goods)}" in result.output
    assert pq.ParquetFile(tmp_path / "y.parquet").metadata.num_row_groups > 1
    rejected = pq.read_table(tmp_path / "y.rejects.parquet").column("id").to_pylist()
    assert sorted(rejected) == sorted(r[0] for r in rows if r[2])
    got = pq.read_table(tmp_path / "y.parquet").to_pylist()
    assert sorted(r["id"] for r in got) == [r[0] for r in goods]
    by_id = {r["id"]: r for r in got}
    expected = reference(out, MODEL, [np.array(r[1], np.float32) for r in goods])   # (n, O)
    y = np.array([by_id[r[0]]["output"] for r in goods], np.float32)
    tol = spec_of(out, MODEL).tolerance("cpu")
    assert np.all(np.abs(y - expected) <= tol.atol + tol.rtol * np.abs(expected))
    assert [by_id[r[0]]["label"] for r in goods] == list(expected.argmax(axis=1))
