"""Input headers that declare more than the file holds (issue 25, row 9): predict and score
refuse them in one line before numpy allocates, with no traceback and nothing written."""
import io
import os
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .test_cli import one_line_error

HUGE = (100000, 100000, 5)      # 186 GiB of float32


def lying_npy(shape=HUGE) -> bytes:
    """A real .npy of one float32, its header rewritten to claim `shape`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + np.zeros(8, np.float32).tobytes()


def lying_npz(path, **arrays):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in arrays.items():
            archive.writestr(f"{name}.npy", data)
    return path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def out(exported):
    return exported["out"]


def test_predict_refuses_a_lying_npy_before_allocating(out, tmp_path):
    (tmp_path / "x.npy").write_bytes(lying_npy())
    one_line_error(run("predict", "--model", "classifier", "--out", out, "--input",
                       tmp_path / "x.npy"),
                   "header declares shape (100000, 100000, 5) float32",
                   "more than the 32 bytes the file holds", "refused before allocating")


def test_predict_refuses_a_lying_npz(out, tmp_path):
    path = lying_npz(tmp_path / "x.npz", input=lying_npy())
    one_line_error(run("predict", "--model", "classifier", "--out", out, "--input", path),
                   "array 'input'", "refused before allocating")


def test_score_refuses_a_lying_npz_and_writes_nothing(out, tmp_path):
    path = lying_npz(tmp_path / "x.npz", input=lying_npy(),
                     lengths=lying_npy((100000,)))
    one_line_error(run("score", "--model", "classifier", "--out", out, "--input", path,
                       "--output", tmp_path / "y.parquet"), "refused before allocating")
    assert os.listdir(tmp_path) == ["x.npz"]


def test_the_stated_limit_holds_for_honest_headers_too(out, tmp_path, monkeypatch):
    """A file as big as its header says, above MAX_ARRAY_BYTES (lowered here), and a Parquet
    column chunk likewise."""
    np.save(tmp_path / "x.npy", np.zeros((2, 30, 5), np.float32))            # 1,200 bytes
    import pipeline.bounded as bounded
    monkeypatch.setattr(bounded, "MAX_ARRAY_BYTES", 1000)
    one_line_error(run("predict", "--model", "classifier", "--out", out, "--input",
                       tmp_path / "x.npy"), "limit of")
    rng = np.random.default_rng(0)             # random: no dictionary makes them small
    table = pa.table({"id": np.arange(100),
                      "sequence": rng.standard_normal((100, 3, 5)).tolist()})
    pq.write_table(table, tmp_path / "x.parquet")
    one_line_error(run("score", "--model", "classifier", "--out", out, "--input",
                       tmp_path / "x.parquet", "--output", tmp_path / "y.parquet"),
                   "row group 0", "refused before reading")
    assert not (tmp_path / "y.parquet").exists()


def test_honest_files_still_load(out, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez_compressed(tmp_path / "x.npz", input=x)
    for name in ("x.npy", "x.npz"):
        result = run("predict", "--model", "classifier", "--out", out, "--input",
                     tmp_path / name)
        assert result.exit_code == 0, result.output
