"""The `score` command: a dataset through a verified artifact, locally or on Ray."""
from __future__ import annotations

from pathlib import Path

import click

from ..runtimes import RUNTIMES
from .common import (domain_errors, out_option, refuse_beside_version_dir, selected,
                     single_model_option, version_dir_options)


@click.command()
@single_model_option
@click.option("--input", "input_path", required=True, metavar="PATH",
              type=click.Path(exists=True, path_type=Path),
              help="A .parquet file, a folder of them, or an .npz (input, lengths[, id]; "
                   "a token model: int ids (batch, seq), lengths optional).")
@click.option("--output", required=True, metavar="FILE.parquet",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Output Parquet: id, output (list<float32>), label (classifiers); a "
                   "per-step model's list<list<float32>> and list<int64>; written atomically.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local: this process; ray: Ray Data with an actor pool "
              "(pip install '.[scale]').")
@click.option("--ray-address", metavar="ADDR",
              help="Join this Ray cluster (e.g. HEAD:6379 or ray://HEAD:10001); default: start "
                   "a local Ray for the run and stop it.")
@click.option("--actors", type=click.IntRange(min=1), metavar="N",
              help="Ray actor pool size. Default: one per --actor-cpus of the cluster's CPUs, "
                   "less one (for the reads).")
@click.option("--actor-cpus", type=click.FloatRange(min=0, min_open=True), metavar="N",
              help="CPUs each Ray actor asks for. Default: --threads (fractions pack actors "
                   "onto a CPU; the session still runs --threads threads).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnx", show_default=True,
              help="Which artifact runs: onnx (model.onnx on ONNX Runtime), torchscript "
                   "(model.pt), torch (eager), openvino, tract, onnx-reference.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8", "fp16"]),
              default="fp32", show_default=True,
              help="A precision variant of --runtime that verify let through its accuracy "
                   "budget (e.g. --runtime onnx --precision int8; --runtime openvino "
                   "--precision bf16); an unverified or failed pair is refused with its "
                   "figures. See docs/precision.md.")
@click.option("--bad-rows", type=click.Choice(["fail", "skip"]), default="fail",
              show_default=True, help="fail: the first bad row's id and reason, exit 1, no "
              "output; skip: bad rows go to <output stem>.rejects.parquet (id, reason).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16384, show_default=True,
              metavar="N", help="Rows held for grouping by length (local; bounds memory) or "
                                "per actor call (ray).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="N", help="Intra-op threads of the session (each Ray actor asks for as "
                                "many CPUs).")
@click.option("--id-column", default="id", show_default=True, metavar="C",
              help="Column passed through to the output as it is.")
@click.option("--sequence-column", default="sequence", show_default=True, metavar="C",
              help="Column of sequences: list<list<float>> or list<fixed_size_list<float, F>>.")
@out_option
@version_dir_options
@click.option("--quiet", is_flag=True, help="No progress bar or progress lines.")
@domain_errors
def score(model, input_path, output, engine, ray_address, actors, actor_cpus, runtime, bad_rows,
          batch_size, threads, id_column, sequence_column, out, version_dir, public_key,
          quiet, precision):
    """Score a dataset of variable-length sequences with a verified artifact.

    Each row's answer is the model's on that sequence alone (rows run in groups of
    equal length, never padded). The manifest is checked before the artifact is loaded
    (with --version-dir: its signature). Prints a summary line: rows scored, rejected,
    time, rows/s. Progress goes to stderr: a bar on a terminal, a line every 10 s in a log.
    See docs/scoring.md.

    \b
    Example:
      python -m pipeline score --model classifier --input seqs.parquet --output scores.parquet
      python -m pipeline score --model forecaster --input data/ --output y.parquet \\
          --bad-rows skip --threads 2
      python -m pipeline score --model classifier --input /shared/seqs --output y.parquet \\
          --engine ray --ray-address HEAD:6379 --threads 2
    """
    from ..scoring import ScoreConfig, main, summary_line

    refuse_beside_version_dir(version_dir, "runtime", "precision")
    if model is not None:
        selected((model,), out)
    config = ScoreConfig(model, input_path, output, out, runtime, engine, bad_rows, batch_size,
                         threads, id_column, sequence_column, version_dir, public_key,
                         ray_address, actors, actor_cpus, progress=not quiet,
                         precision=precision)
    click.echo(summary_line(main(config, log=lambda s: click.echo(s, err=True))))
