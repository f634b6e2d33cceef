"""The local engine against the seed classes run on each sequence alone: ragged data, both
models, batch boundaries and pool flushes crossed, ids of several types; bad rows in both
modes; what an interrupted run leaves."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError, PipelineError
from pipeline.scoring import ScoreConfig, main

from .conftest import assert_matches, ragged, read_output, spec_of, write_parquet


def score(out, name, input, output, **options):
    return main(ScoreConfig(name, Path(input), Path(output), out=out, progress=False,
                            **options), log=lambda s: None)


@pytest.mark.parametrize("name", ["classifier", "forecaster"])
def test_ragged_rows_equal_each_sequence_alone(out, tmp_path, name):
    spec = spec_of(out, name)
    sequences = ragged(spec, 300, 1, 70, seed=1)
    # two files (ids int32 then int64), small row groups, a pool of 40 rows and reads of
    # 40: rows of one length meet across batches, files and pool flushes
    write_parquet(tmp_path / "in" / "a.parquet", sequences[:170],
                  ids=pa.array(np.arange(170), pa.int32()), row_group_size=25) \
        if (tmp_path / "in").mkdir() is None else None
    write_parquet(tmp_path / "in" / "b.parquet", sequences[170:], ids=np.arange(170, 300),
                  fixed=False, row_group_size=60)
    result = score(out, name, tmp_path / "in", tmp_path / "y.parquet", batch_rows=40)
    assert (result["rows"], result["rejected"]) == (300, 0)
    by_id, table = read_output(tmp_path / "y.parquet")
    assert table.schema.field("id").type == pa.int32()         # the first file's type
    assert table.schema.field("output").type == pa.list_(pa.float32())
    assert_matches(out, name, by_id, sequences)
    if spec.task == "classification":
        labels = dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist()))
        assert all(labels[i] == int(np.argmax(by_id[i])) for i in by_id)
    else:
        assert "label" not in table.schema.names


@pytest.mark.parametrize("ids", [["s-%03d" % i for i in range(60)], np.arange(60) * 1.5,
                                 np.arange(60, dtype=np.uint8)])
def test_ids_pass_through_as_they_are(out, tmp_path, ids):
    spec = spec_of(out, "classifier")
    sequences = ragged(spec, 60, 1, 20, seed=2)
    write_parquet(tmp_path / "x.parquet", sequences, ids=ids)
    score(out, "classifier", tmp_path / "x.parquet", tmp_path / "y.parquet", prefetch=False)
    by_id, table = read_output(tmp_path / "y.parquet")
    assert table.schema.field("id").type == pa.array(ids).type
    assert_matches(out, "classifier", by_id, sequences, ids=pa.array(ids).to_pylist())


@pytest.mark.parametrize("runtime", ["torchscript", "torch"])
def test_other_runtimes_and_npz_input(out, tmp_path, runtime):
    spec = spec_of(out, "forecaster")
    sequences = ragged(spec, 40, 1, 30, seed=3)
    x = np.zeros((40, 30, spec.input_size), np.float32)
    for i, s in enumerate(sequences):
        x[i, :len(s)] = s
    np.savez(tmp_path / "x.npz", input=x, lengths=np.array([len(s) for s in sequences]),
             id=np.arange(100, 140))
    score(out, "forecaster", tmp_path / "x.npz", tmp_path / "y.parquet", runtime=runtime,
          batch_rows=16)
    by_id, _ = read_output(tmp_path / "y.parquet")
    assert_matches(out, "forecaster", by_id, sequences, ids=range(100, 140))


def bad_rows_file(spec, path):
    """20 good rows and 3 bad ones (ids 5: NaN, 11: null, 17: empty)."""
    sequences = ragged(spec, 20, 1, 15, seed=4)
    rows = [s.tolist() for s in sequences]
    rows[5][0][0] = float("nan")
    rows[11], rows[17] = None, []
    table = pa.table({"id": np.arange(20) + 1000 * np.isin(np.arange(20), [5, 11, 17]),
                      "sequence": pa.array(rows, pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, path)
    return sequences


def test_bad_rows_fail_names_the_first_and_writes_nothing(out, tmp_path):
    bad_rows_file(spec_of(out, "classifier"), tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"row with id 1005: NaN at step 0, feature 0"):
        score(out, "classifier", tmp_path / "x.parquet", tmp_path / "y.parquet")
    assert os.listdir(tmp_path) == ["x.parquet"]                # no output, no temp file


def test_bad_rows_skip_accounts_for_every_row(out, tmp_path):
    sequences = bad_rows_file(spec_of(out, "classifier"), tmp_path / "x.parquet")
    result = score(out, "classifier", tmp_path / "x.parquet", tmp_path / "y.parquet",
                   bad_rows="skip")
    assert (result["rows"], result["rejected"]) == (17, 3)
    rejects = pq.read_table(tmp_path / "y.rejects.parquet").to_pylist()
    assert rejects == [{"id": 1005, "reason": "NaN at step 0, feature 0"},
                       {"id": 1011, "reason": "null sequence"},
                       {"id": 1017, "reason": "empty sequence"}]
    by_id, _ = read_output(tmp_path / "y.parquet")
    good = [i for i in range(20) if i not in (5, 11, 17)]
    assert_matches(out, "classifier", by_id, [sequences[i] for i in good], ids=good)


def test_options_are_refused_before_any_work(out, tmp_path):
    write_parquet(tmp_path / "x.parquet", ragged(spec_of(out, "classifier"), 3))
    for options, message in [
            (dict(output=tmp_path / "y.csv"), "must be a .parquet file"),
            (dict(output=tmp_path / "no" / "y.parquet"), "does not exist"),
            (dict(output=tmp_path / "x.parquet"), "inside --input"),
            (dict(engine="local", actors=2), "go with --engine ray"),
            (dict(model=None), "give --model"),
            (dict(public_key=tmp_path / "k.pub"), "go together"),
            (dict(batch_rows=0), "must be >= 1")]:
        config = dict(model="classifier", input=tmp_path / "x.parquet",
                      output=tmp_path / "y.parquet", out=out, progress=False) | options
        with pytest.raises(PipelineError, match=message):
            main(ScoreConfig(**config))
    assert os.listdir(tmp_path) == ["x.parquet"]


def test_a_killed_run_leaves_no_complete_looking_output(out, tmp_path):
    """SIGKILL while output row groups are being written: no y.parquet, only a `.tmp-` file
    with no Parquet footer, which the next run removes."""
    spec = spec_of(out, "classifier")
    write_parquet(tmp_path / "x.parquet", ragged(spec, 4000, 1, 30, seed=5), row_group_size=50)
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pipeline.scoring import ScoreConfig, main
        from pipeline.scoring import output
        write = output.ScoreWriter.write
        def slow(self, ids, y):             # after the first row group: signal and linger
            write(self, ids, y)
            print("writing", flush=True)
            time.sleep(0.05)
        output.ScoreWriter.write = slow
        main(ScoreConfig("classifier", Path("{tmp_path}/x.parquet"), Path("{tmp_path}/y.parquet"),
                         out=Path("{out}"), batch_rows=50, progress=False))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = sorted(os.listdir(tmp_path))
    assert "y.parquet" not in left and len(left) == 2 and left[0].startswith(".tmp-y.parquet.")
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(tmp_path / left[0])                       # no footer: not a Parquet file
    score(out, "classifier", tmp_path / "x.parquet", tmp_path / "y.parquet")
    assert sorted(os.listdir(tmp_path)) == ["x.parquet", "y.parquet"]


def test_peak_memory_does_not_grow_with_the_file(out, tmp_path):
    """4k then 40k rows (12 then 120 MB of float32 sequences, about the process's own
    ~250 MB base: held whole, with Arrow's and the pool's copies, they would double it) in
    fresh processes: peak RSS within 1.5x."""
    from pipeline.scoring.dataset import sequences_table
    spec = spec_of(out, "classifier")
    chunk = ragged(spec, 4000, 1, 300, seed=11)
    writer = pq.ParquetWriter(tmp_path / "big.parquet", pa.schema(
        [("id", pa.int64()), ("sequence", pa.list_(pa.list_(pa.float32(), spec.input_size)))]))
    with writer:
        for k in range(10):                              # the same rows, new ids, 10 times
            table = sequences_table(chunk, ids=np.arange(k * 4000, (k + 1) * 4000))
            writer.write_table(table.cast(writer.schema), row_group_size=1000)
            if k == 0:
                pq.write_table(table.cast(writer.schema), tmp_path / "small.parquet",
                               row_group_size=1000)
    # VmHWM (this address space's peak), not ru_maxrss, which Linux carries over fork and
    # exec: the children would report pytest's own, larger, peak
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from pipeline.scoring import ScoreConfig, main
        r = main(ScoreConfig("classifier", Path(sys.argv[1]), Path(sys.argv[2]),
                             out=Path(sys.argv[3]), batch_rows=2048, progress=False))
        hwm = next(line.split()[1] for line in open("/proc/self/status")
                   if line.startswith("VmHWM"))
        print(r["rows"], hwm)
    """)
    peaks = {}
    for name in ("small", "big"):
        done = subprocess.run([sys.executable, "-c", script, tmp_path / f"{name}.parquet",
                               tmp_path / f"{name}-y.parquet", out], capture_output=True,
                              text=True, check=True)
        rows, peaks[name] = map(int, done.stdout.split())          # KiB
        assert rows == {"small": 4000, "big": 40000}[name]
    assert peaks["big"] <= 1.5 * peaks["small"], peaks


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_log():
    import io

    from pipeline.scoring.output import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    lines = []
    log = Progress(100, lines.append, stream=io.StringIO(), every_s=0)
    log.update(40)
    log.update(60)
    log.close()
    assert [line.split(",")[0] for line in lines] == ["score: 40 / 100 rows (40.0%)",
                                                      "score: 100 / 100 rows (100.0%)"]
    assert all(line.endswith(" rows/s") and "\r" not in line for line in lines)
    screen, lines = Terminal(), []
    bar = Progress(100, lines.append, stream=screen)
    bar.update(100)
    bar.close()
    assert lines == [] and "100/100" in screen.getvalue() and "\r" in screen.getvalue()
