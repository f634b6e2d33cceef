"""Benchmark of `score`: rows/s against the obvious ways, and the Ray engine's scaling.

    python -m pipeline.scoring.bench --out exported              # make bench-score
    python -m pipeline.scoring.bench --rows 20000 --no-ray --no-memory   # a quick look

On `--rows` seeded sequences of lengths 1-300 per model (written to a temp Parquet file of
16384-row row groups, default pyarrow settings otherwise), all with one ONNX Runtime /
torch thread, each timed from the same file to its answers, process start-up and model
loading excluded:
  loop      pyarrow reads the file; model.onnx called once per sequence (batch 1)
  eager     pyarrow reads the file; eager PyTorch on groups of equal-length sequences
            (no padding, so its answers are right), every group of the file at once
  score     `score --engine local --threads 1` (reading, checks, grouping, writing the
            output Parquet), with its reader thread, and without it (one thread in all)
  decode    reading alone (pyarrow to numpy): the floor that Parquet decoding sets
  ray N     `score --engine ray --actors N --threads 1` on a local Ray (start excluded)
and peak RSS of `score` in fresh processes on 20k and 200k classifier rows. Prints a
table and writes `<out>/benchmark_score.json`. Figures are for reading, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..checkpoint import read_config
from ..fsio import atomic_write_json
from .score import ScoreConfig, main as score

ROW_GROUP = 16384


def write_dataset(path: Path, rows: int, features: int, seed: int = 0) -> Path:
    """`rows` sequences, lengths 1-300, standard normal float32, in score's input form."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .rows import arrow
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 301, rows)
    values = rng.standard_normal(int(lengths.sum()) * features, dtype=np.float32)
    steps = pa.FixedSizeListArray.from_arrays(arrow(values), features)
    offsets = arrow(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    table = pa.table({"id": arrow(np.arange(rows)),
                      "sequence": pa.ListArray.from_arrays(offsets, steps)})
    pq.write_table(table, path, row_group_size=ROW_GROUP)
    return path


def read_all(path: Path, features: int) -> list[np.ndarray]:
    """Every sequence as a (steps, F) float32 view, read with pyarrow on one thread."""
    import pyarrow.parquet as pq

    from .rows import list_offsets
    sequences = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, use_threads=False):
        col = batch.column("sequence")
        off = list_offsets(col)
        steps = col.values.values.to_numpy().reshape(-1, features)
        sequences += [steps[a:b] for a, b in zip(off[:-1], off[1:])]
    return sequences


def time_loop(model_dir: Path, path: Path, features: int) -> dict:
    from ..runtimes import open_runners
    (runner,) = open_runners(model_dir, ("onnx",), threads=1)
    session, name = runner.impl, runner.spec.input_name
    start = time.perf_counter()
    sequences = read_all(path, features)
    read = time.perf_counter() - start
    for x in sequences:
        session.run(None, {name: x[None]})                     # (1, steps, F)
    return {"rows": len(sequences), "seconds": time.perf_counter() - start, "read_s": read}


def time_eager(model_dir: Path, path: Path, features: int) -> dict:
    import torch

    from ..checkpoint import load_checkpoint
    torch.set_num_threads(1)
    model, _ = load_checkpoint(model_dir)
    start = time.perf_counter()
    sequences = read_all(path, features)
    read = time.perf_counter() - start
    lengths = np.array([len(s) for s in sequences])
    order = np.argsort(lengths, kind="stable")
    with torch.inference_mode():
        for idx in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
            model(torch.from_numpy(np.stack([sequences[i] for i in idx])))
    return {"rows": len(sequences), "seconds": time.perf_counter() - start, "read_s": read}


def time_score(model: str, out: Path, path: Path, tmp: Path, **options) -> dict:
    result = score(ScoreConfig(model, path, tmp / f"{model}-y.parquet", out=out,
                               progress=False, **options), log=lambda s: None)
    return {"rows": result["rows"], "seconds": result["seconds"]}


def peak_rss(model: str, out: Path, path: Path, tmp: Path) -> int:
    """Peak RSS (KiB) of a fresh process scoring `path` with the defaults."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child would
    # report this (larger) process's peak; VmHWM belongs to the child's own address space
    script = ("import sys\nfrom pathlib import Path\n"
              "from pipeline.scoring import ScoreConfig, main\n"
              "main(ScoreConfig(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), "
              "out=Path(sys.argv[4]), progress=False), log=lambda s: None)\n"
              "print(next(line.split()[1] for line in open('/proc/self/status') "
              "if line.startswith('VmHWM')))\n")
    done = subprocess.run([sys.executable, "-c", script, model, str(path),
                           str(tmp / "rss-y.parquet"), str(out)], capture_output=True,
                          text=True, check=True)
    return int(done.stdout.split()[-1])


def run(out: Path, models: list[str], rows: int, ray: bool, memory: bool, log=print) -> dict:
    report = {"rows": rows, "lengths": "1-300", "threads": 1, "load_before": os.getloadavg(),
              "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        tmp = Path(tmp)
        for model in models:
            features = read_config(out / model)["recipe"].model.input_size
            path = write_dataset(tmp / f"{model}.parquet", rows, features)
            figures = {
                "decode": _rate(_time_decode(path, features)),
                "loop": _rate(time_loop(out / model, path, features)),
                "eager": _rate(time_eager(out / model, path, features)),
                "score": _rate(time_score(model, out, path, tmp)),
                "score_one_thread": _rate(time_score(model, out, path, tmp, prefetch=False)),
            }
            if ray:
                for actors in (1, 2):
                    figures[f"ray_{actors}"] = _rate(time_score(
                        model, out, path, tmp, engine="ray", actors=actors))
            report["models"][model] = figures
            log(f"{model}: " + ", ".join(f"{k} {v['rows_per_s']:,.0f}" for k, v in
                                         figures.items()) + " rows/s")
            path.unlink()
        if memory:
            features = read_config(out / "classifier")["recipe"].model.input_size
            report["peak_rss_kib"] = {}
            for n in (20000, 200000):
                path = write_dataset(tmp / f"rss-{n}.parquet", n, features, seed=1)
                report["peak_rss_kib"][n] = peak_rss("classifier", out, path, tmp)
                path.unlink()
    report["load_after"] = os.getloadavg()
    return report


def _time_decode(path: Path, features: int) -> dict:
    start = time.perf_counter()
    rows = len(read_all(path, features))
    return {"rows": rows, "seconds": time.perf_counter() - start}


def _rate(figure: dict) -> dict:
    return figure | {"rows_per_s": figure["rows"] / figure["seconds"]}


def table(report: dict) -> str:
    lines = [f"rows/s, {report['rows']:,} sequences of lengths {report['lengths']}, one "
             f"thread; load {report['load_before'][0]:.2f} before, "
             f"{report['load_after'][0]:.2f} after",
             f"{'':18s}" + "".join(f"{m:>14s}" for m in report["models"])]
    names = list(next(iter(report["models"].values())))
    for name in names:
        lines.append(f"{name:18s}" + "".join(f"{f[name]['rows_per_s']:>14,.0f}"
                                             for f in report["models"].values()))
    for base in ("loop", "eager"):
        lines.append(f"{'score / ' + base:18s}" + "".join(
            f"{f['score']['rows_per_s'] / f[base]['rows_per_s']:>13.1f}x"
            for f in report["models"].values()))
    if "ray_1" in names:
        lines.append(f"{'ray 2 / 1 actors':18s}" + "".join(
            f"{f['ray_2']['rows_per_s'] / f['ray_1']['rows_per_s']:>13.2f}x"
            for f in report["models"].values()))
    if "peak_rss_kib" in report:
        rss = report["peak_rss_kib"]
        lines.append("peak RSS (classifier): " + ", ".join(
            f"{n:,} rows {kib / 1024:.0f} MiB" for n, kib in rss.items()) +
            f" ({rss[200000] / rss[20000]:.2f}x)")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("exported"))
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.out, args.models or ["classifier", "forecaster"], args.rows,
                 not args.no_ray, not args.no_memory)
    print(table(report))
    atomic_write_json(args.out / "benchmark_score.json", json.loads(json.dumps(
        report, default=str)))
    print(f"-> {args.out / 'benchmark_score.json'}")


if __name__ == "__main__":
    cli()
