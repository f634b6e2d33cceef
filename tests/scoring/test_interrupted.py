"""score's output and rejects are one unit (issue 25, row 10): SIGKILL after each rename of
a run that replaces an earlier run's pair never leaves an output beside the other run's
rejects; the next run completes and leaves no temp file."""
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.scoring import ScoreConfig, main

from ..killer import run_killed
from .conftest import ragged, spec_of


def write_input(path, spec, first_id, bad):
    """10 good rows and `bad` rows of 3 features, ids from first_id."""
    import pyarrow as pa
    rows = [s.tolist() for s in ragged(spec, 10, 1, 6, seed=first_id)]
    rows += [[[0.5, 0.5, 0.5]]] * bad
    pq.write_table(pa.table({"id": pa.array(np.arange(first_id, first_id + len(rows))),
                             "sequence": pa.array(rows, pa.list_(pa.list_(pa.float32())))}),
                   path)
    return set(range(first_id, first_id + len(rows)))


def pair(folder):
    """(ids in y.parquet, ids in y.rejects.parquet); None for a missing file."""
    def ids(name):
        path = folder / name
        return set(pq.read_table(path).column("id").to_pylist()) if path.exists() else None
    return ids("y.parquet"), ids("y.rejects.parquet")


@pytest.mark.parametrize("n", [1, 2])
def test_a_kill_after_each_rename_never_pairs_two_runs(out, tmp_path, n):
    spec = spec_of(out, "classifier")
    old = write_input(tmp_path / "old.parquet", spec, 0, bad=2)
    new = write_input(tmp_path / "new.parquet", spec, 100, bad=3)
    work = tmp_path / "work"
    work.mkdir()
    config = dict(output=work / "y.parquet", out=out, bad_rows="skip", progress=False)
    main(ScoreConfig("classifier", tmp_path / "old.parquet", **config))
    assert pair(work)[0] | pair(work)[1] == old
    script = ("from pathlib import Path\nfrom pipeline.scoring import ScoreConfig, main\n"
              f"main(ScoreConfig('classifier', Path({str(tmp_path / 'new.parquet')!r}), "
              f"Path({str(work / 'y.parquet')!r}), out=Path({str(out)!r}), bad_rows='skip', "
              "progress=False))\n")
    assert run_killed(script, n) == -9
    scored, rejected = pair(work)
    if scored is not None:          # an output is there: its rejects are from its own run
        assert rejected is not None and (scored | rejected) in (old, new), (scored, rejected)
        assert not scored & rejected
    main(ScoreConfig("classifier", tmp_path / "new.parquet", **config))
    scored, rejected = pair(work)
    assert scored | rejected == new and len(rejected) == 3
    assert sorted(os.listdir(work)) == ["y.parquet", "y.rejects.parquet"]


def test_a_fail_mode_run_removes_an_older_runs_rejects(out, tmp_path):
    spec = spec_of(out, "classifier")
    write_input(tmp_path / "old.parquet", spec, 0, bad=2)
    new = write_input(tmp_path / "new.parquet", spec, 100, bad=0)
    config = dict(output=tmp_path / "y.parquet", out=out, progress=False)
    main(ScoreConfig("classifier", tmp_path / "old.parquet", bad_rows="skip", **config))
    main(ScoreConfig("classifier", tmp_path / "new.parquet", **config))
    assert pair(tmp_path) == (new, None)
