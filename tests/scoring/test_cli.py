"""`python -m pipeline score` through click: the summary line, one-line errors for a bad
value of every option, the missing extra, a signed published version."""
import builtins
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from ..test_cli import one_line_error
from .conftest import assert_matches, ragged, read_output, spec_of, write_parquet


def run(*args):
    return CliRunner().invoke(cli, ["score", *map(str, args)])


@pytest.fixture
def data(out, tmp_path):
    sequences = ragged(spec_of(out, "forecaster"), 25, 1, 20, seed=9)
    return write_parquet(tmp_path / "x.parquet", sequences), sequences


def test_score_prints_a_summary_and_progress_lines_go_to_stderr(out, tmp_path, data):
    path, sequences = data
    result = run("--model", "forecaster", "--input", path, "--output", tmp_path / "y.parquet",
                 "--out", out, "--threads", "2", "--batch-size", "7")
    assert result.exit_code == 0, result.output
    assert "forecaster (onnx, local): scored 25 rows, rejected 0, in " in result.output
    by_id, _ = read_output(tmp_path / "y.parquet")
    assert_matches(out, "forecaster", by_id, sequences)


def test_a_run_imports_only_what_scoring_needs(out, tmp_path, data):
    """`python -m pipeline score` is timed end to end against a bare loop (issue 23): no
    torch, no pandas, no other command's module, no importlib.metadata (~0.02 s), no
    numpy.ma (np.unique's, ~0.01 s), no pyarrow.compute (for integer ids)."""
    path, _ = data
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", "score",
                           "--model", "forecaster", "--input", path, "--output",
                           tmp_path / "y.parquet", "--out", out, "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "pipeline.scoring.local" in imported and "onnxruntime" in imported
    unwanted = {"torch", "pandas", "importlib.metadata", "numpy.ma", "pyarrow.compute",
                "pipeline.cli.stages", "pipeline.cli.serving", "pipeline.cli.publishing",
                "pipeline.cli.release", "pipeline.cli.importing", "pipeline.cli.deploy"}
    assert not unwanted & imported, unwanted & imported


def test_parquet_without_ids_is_scored_with_row_numbers(out, tmp_path):
    """No `id` column: the row number is the id (as for an .npz), counted across the files of
    a folder in name order, and the summary line says so. A file that has ids beside one
    that has none is refused."""
    import pyarrow as pa

    sequences = ragged(spec_of(out, "forecaster"), 30, 1, 12, seed=4)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, part in (("a", sequences[:17]), ("b", sequences[17:])):
        table = write_parquet(tmp_path / f"{name}.parquet", part)
        pq.write_table(pq.read_table(table).drop_columns(["id"]), folder / f"{name}.parquet")
    result = run("--model", "forecaster", "--input", folder, "--output", tmp_path / "y.parquet",
                 "--out", out, "--batch-size", "5")
    assert result.exit_code == 0, result.output
    assert "scored 30 rows" in result.output
    assert "ids are row numbers from 0 (the input has no id column)" in result.output
    by_id, table = read_output(tmp_path / "y.parquet")
    assert table.schema.field("id").type == pa.int64()
    assert_matches(out, "forecaster", by_id, sequences)      # row i's answer is sequence i's
    write_parquet(folder / "c.parquet", sequences[:2])       # ids here, none in a.parquet
    one_line_error(run("--model", "forecaster", "--input", folder, "--output",
                       tmp_path / "z.parquet", "--out", out),
                   "c.parquet: has column 'id', unlike the first file")


@pytest.mark.parametrize("args, needle", [
    (["--id-column", "key"], "x.parquet: has no column 'key'; columns: id, sequence"),
    (["--sequence-column", "seq"], "x.parquet: has no column 'seq'"),
])
def test_a_missing_column_is_one_line(out, tmp_path, data, args, needle):
    """(Every option's bad values without a model: BAD_OPTIONS in tests/test_cli.py.)"""
    one_line_error(run("--model", "classifier", "--input", data[0], "--output",
                       tmp_path / "y.parquet", "--out", out, *args), needle)
    assert not (tmp_path / "y.parquet").exists()


def test_bad_rows_fail_is_one_line_with_the_id(out, tmp_path):
    spec = spec_of(out, "classifier")
    rows = [s.tolist() for s in ragged(spec, 4, 2, 5)]
    rows[2][1][0] = float("inf")
    pq.write_table(__import__("pyarrow").table({"id": ["a", "b", "c", "d"], "sequence": rows}),
                   tmp_path / "x.parquet")
    result = run("--model", "classifier", "--input", tmp_path / "x.parquet", "--output",
                 tmp_path / "y.parquet", "--out", out)
    one_line_error(result, "row with id 'c': Inf at step 1, feature 0", "--bad-rows skip")
    assert not (tmp_path / "y.parquet").exists()


def test_the_ray_engine_without_ray_names_the_install(out, tmp_path, data, monkeypatch):
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    result = run("--model", "classifier", "--input", data[0], "--output",
                 tmp_path / "y.parquet", "--out", out, "--engine", "ray")
    one_line_error(result, "--engine ray needs Ray Data", "pip install '.[scale]'")


def test_a_signed_published_version_is_scored_and_a_tampered_one_refused(out, tmp_path, data,
                                                                         published):
    """score takes <registry>/forecaster_onnx/1 with the publisher's key, refuses it with
    another key or once a file changed."""
    import shutil
    version = tmp_path / "forecaster_onnx" / "1"          # a copy: the fixture is shared
    shutil.copytree(published["version"], version)
    keys = published["keys"]
    args = ["--input", data[0], "--output", tmp_path / "y.parquet", "--version-dir", version]
    result = run(*args, "--public-key", keys["a"]["public"])
    assert result.exit_code == 0, result.output
    by_id, _ = read_output(tmp_path / "y.parquet")
    assert_matches(out, "forecaster", by_id, data[1])
    one_line_error(run(*args, "--public-key", keys["b"]["public"]), "signed by another key")
    (version / "model.onnx").write_bytes((version / "model.onnx").read_bytes() + b"\0")
    one_line_error(run(*args, "--public-key", keys["a"]["public"]))
