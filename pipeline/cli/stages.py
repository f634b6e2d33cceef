"""The stage commands: train, export, verify, predict, bench."""
from __future__ import annotations

from pathlib import Path

import click

from ..runtimes import RUNTIMES
from ..shapes import ShapesType
from ..specs import MODEL_NAMES, SPECS
from .common import (domain_errors, model_option, out_option, refuse_beside_version_dir,
                     selected, single_model_option, version_dir_options)

# What each --runtime name runs; the last three need `pip install '.[runtimes]'`.
RUNTIME_HELP = ("torch: eager PyTorch from the weights; torchscript: model.pt; onnx: model.onnx "
                "on ONNX Runtime; openvino, tract, onnx-reference (the ONNX reference "
                "evaluator): model.onnx on those (pip install '.[runtimes]').")


@click.command()
@model_option
@out_option
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default: the model's recipe).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: the recipe's, 0).")
@domain_errors
def train(models, out, epochs, seed):
    """Train models and save DIR/<model>/weights.safetensors and config.json.

    \b
    Example:
      python -m pipeline train --model forecaster --epochs 4 --out /tmp/runs
    """
    from ..fsio import ensure_dir
    from ..train import TrainConfig, main

    ensure_dir(out)
    for name in selected(models, out, MODEL_NAMES):
        m = main(TrainConfig(name, out, epochs, seed), log=lambda s: click.echo(s, err=True))
        click.echo(f"{name}: test {m['metric']} {m['test']:.4f}, baseline ({m['baseline_kind']}) "
                   f"{m['baseline']:.4f}; trained in {m['train_seconds']:.1f}s -> {out / name}")


@click.command()
@model_option
@out_option
@click.option("--opset", type=click.IntRange(18, 21), default=18, show_default=True,
              help="ONNX opset of the graph (18-21; onnxruntime >= 1.22 runs all of them).")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              metavar="fp32[,bf16,int8,fp16]",
              help="Precision variants to write beside the fp32 files (fp32 is always "
                   "written): int8 -> model_int8.onnx + model_stream_int8.onnx (ONNX Runtime "
                   "integer kernels); bf16 -> none (OpenVINO runs model.onnx in bf16); fp16 -> "
                   "model_fp16.onnx (CUDA). See docs/precision.md.")
@domain_errors
def export(models, out, opset, precisions):
    """Export trained models to DIR/<model>/model.pt (TorchScript) and model.onnx.

    Both artifacts must match the eager model at batch 1 and 64 and sequence lengths 1,
    the export example's and 10x it before they replace anything; manifest.json
    (hashes, signature, versions) is written last. Also writes the stream artifacts
    model_stream.pt / model_stream.onnx (input, lengths, h_in -> output, h_out), checked
    on ragged batches and on a sequence fed in chunks with carried state.

    \b
    Example:
      python -m pipeline export --model classifier --opset 18
    """
    from ..export import ExportConfig, main
    from ..precision import parse_precisions

    precisions = parse_precisions(precisions)
    for name in selected(models, out):
        manifest = main(ExportConfig(name, out, opset, precisions),
                        log=lambda s: click.echo(s, err=True))
        signature = manifest["signature"]
        files = [f for f in ("model.pt", "model.onnx", "model_stream.pt", "model_stream.onnx")
                 if (out / name / f).exists()] + ["manifest.json"]    # no stream: bidirectional
        click.echo(f"{name}: {signature['inputs'][0]['shape']} -> {signature['outputs'][0]['shape']}"
                   f", opset {manifest['onnx']['opset']} -> {out / name}/"
                   f"{{{','.join(files)}}}")
        for p, entry in manifest.get("precisions", {}).items():
            files = ", ".join(entry["files"].values()) or \
                f"none (runs {', '.join(entry.get('runs', {}).values())})"
            skipped = "".join(f"; no {k} file: {why}" for k, why in entry["skipped"].items())
            click.echo(f"{name}: {p} on {', '.join(entry['runtimes'])}: {files}{skipped}")


@click.command()
@model_option
@out_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="ONNX Runtime execution provider; auto picks CUDA when "
              "onnxruntime-gpu and a GPU are present. The reference is eager PyTorch on CPU.")
@click.option("--shapes", type=ShapesType(), default=None,
              help="Comma-separated BATCHxSEQ list, e.g. 1x1,64x500. "
                   "Default: batch 1, 2, 64 x seq 1, the export example's, 10x it.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice([*RUNTIMES, "all"]),
              help="Runtime to compare with eager PyTorch; repeat for several; all = every "
              "one. Default: torchscript and onnx. " + RUNTIME_HELP)
@click.option("--budget", "budget", default=None, metavar="labels=PCT,max=PCT",
              help="Accuracy budget of the precision variants against eager fp32: labels "
                   "agree on at least PCT of rows/steps, max error at most PCT of the "
                   "output's std. Default: labels=99.5%,max=1%.")
@click.option("--data", type=click.Path(exists=True, path_type=Path), default=None,
              metavar="FILE.parquet",
              help="Measure the budget on these sequences (score's reader: .parquet, a folder "
                   "of them, or .npz) instead of the verification inputs.")
@domain_errors
def verify(models, out, device, shapes, runtimes, budget, data):
    """Check artifact hashes, then compare each runtime with eager PyTorch.

    Every input shape runs at unit scale and at a scale that saturates tanh. Writes
    DIR/<model>/verification.json (rows, and one entry per runtime: version, precision,
    worst error per shape); exits non-zero if any check fails, naming it. A runtime
    that is not installed is an error naming the install command.

    \b
    Example:
      python -m pipeline verify --model forecaster --device cpu --shapes 1x1,64x500
      python -m pipeline verify --runtime all
    """
    from ..errors import VerificationError
    from ..precision.budget import describe, parse_budget
    from ..runtimes import DEFAULT_VERIFY
    from ..verify import VerifyConfig, format_table, main

    budget = parse_budget(budget)
    failures = []
    for name in selected(models, out):
        try:
            report = main(VerifyConfig(name, out, device, tuple(shapes) if shapes else None,
                                       runtimes=runtimes or DEFAULT_VERIFY, budget=budget,
                                       data=data))
        except VerificationError as exc:
            if exc.report:
                click.echo(format_table(exc.report))
                _budget_lines(name, exc.report, budget, describe)   # measured all the same
            failures.append(str(exc))
            continue
        click.echo(format_table(report))
        click.echo(f"{name}: all {len(report['rows'])} checks passed "
                   f"(providers: {', '.join(report['providers'])})")
        _budget_lines(name, report, budget, describe)
    if failures:
        raise click.ClickException(" | ".join(failures))


def _budget_lines(name: str, report: dict, budget, describe) -> None:
    """Each precision variant's figures and verdict (a pair outside the budget is never
    used; fp32 stands on the tolerance rule)."""
    variants = [e for e in report.get("precisions", []) if e["precision"] != "fp32"]
    if variants:
        click.echo(f"{name}: precision budget ({budget}, on {report['budget_data']}):")
    for entry in variants:
        click.echo(f"  {describe(entry)}", err=entry["status"] != "passed")


# Help text from the specs (cheap to import), so the stated contract is the enforced one.
_FEATURES = ", ".join(f"{name} {SPECS[name].input_size}" for name in MODEL_NAMES)


@click.command(help=f"""Run an exported model on an array file and print or save its outputs.

    The manifest is checked first (every file's size and sha256); a published version
    (--version-dir) is loaded only after its signature checks out with --public-key. Then
    the input must pass this policy before inference, or the command exits 1 with one
    line saying why:

    \b
      .npy  one array of shape (batch, seq, features)
      .npz  exactly one array, or one named as the model's input ('input')
      .csv  one sequence: a row per time step, a column per feature, no header
            (read as batch 1)
      rank 3; batch >= 1 and seq >= 1; features = the model's (its config.json; built-in:
      {_FEATURES}); dtype float32 (float64 is converted, other dtypes refused); no NaN or Inf
      (the index of the first is reported); pickled (object) arrays are never loaded.

    Prints one line per sequence (classifier: predicted class and logits; forecaster:
    the forecast), or with --output writes the (batch, outputs) array to a .npy file.

    --stream runs the stream artifact (state carried, one length per row): an .npz with
    'input' (batch, seq, features) padded past each row's length, 'lengths' (batch,)
    integers in 1..seq, optionally the state 'h_in' (batch, hidden), or (batch, layers,
    hidden), and for an LSTM 'c_in' (zeros start a stream). Prints each row's output and
    state, or with --output writes them to an .npz; feed h_out (c_out) back as h_in (c_in)
    to continue the stream.

    \b
    Example:
      python -m pipeline predict --model classifier --input x.npy
      python -m pipeline predict --model forecaster --input x.csv --runtime torch --output y.npy
      python -m pipeline predict --model classifier --input x.npy --runtime tract
      python -m pipeline predict --model forecaster --input step.npz --stream --output next.npz
      python -m pipeline predict --model churn --input x.npy --runtime onnx --precision int8
      python -m pipeline predict --version-dir REPO/classifier_onnx/1 --public-key k.pub \\
          --input x.npy
    """)
@single_model_option
@click.option("--input", "input_path", required=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Input array: .npy, .npz or .csv (see the policy above).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="onnx", show_default=True,
              help=RUNTIME_HELP)
@click.option("--output", metavar="FILE.npy", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the outputs here (.npy, atomically; .npz with --stream) instead "
                   "of printing them.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8", "fp16"]),
              default="fp32", show_default=True,
              help="A precision variant of --runtime that verify let through its accuracy "
                   "budget (--runtime onnx --precision int8; --runtime openvino --precision "
                   "bf16); an unverified or failed pair is refused with its figures.")
@click.option("--stream", is_flag=True,
              help="Run the stream artifact (model_stream.*) on an .npz of input, lengths, h_in.")
@out_option
@version_dir_options
@domain_errors
def predict(model, input_path, runtime, precision, output, stream, out, version_dir,
            public_key):
    from ..predict import PredictConfig, format_rows, main

    refuse_beside_version_dir(version_dir, "runtime", "precision")
    if model is not None:
        selected((model,), out)
    result = main(PredictConfig(model, input_path, runtime, output, out, version_dir, public_key,
                                stream, precision),
                  log=lambda s: click.echo(s, err=True))
    if output is None:
        lines = format_rows(result["output"], result["spec"])
        if stream:
            spec = result["spec"]
            for _, o in spec.state_names:   # the state per row, flattened over layers
                lines = [f"{line}  {o} [{', '.join(f'{v:.6g}' for v in h.ravel())}]"
                         for line, h in zip(lines, result[o])]
        click.echo("\n".join(lines))
    else:
        click.echo(f"{result['spec'].name}: {result['output'].shape} outputs "
                   f"({result['runtime']}) -> {output}")


@click.command()
@model_option
@out_option
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads for torch and onnxruntime alike (intra-op).")
@click.option("--shapes", type=ShapesType(), default="1x1,1x50,64x200,512x100",
              metavar="BxS,...", show_default=True,
              help="Shapes to time, batch x seq, comma-separated.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="auto: CUDA when onnxruntime has it, else CPU.")
@click.option("--budget", type=click.FloatRange(min=0), default=3.0, show_default=True,
              metavar="SECONDS", help="Timing budget per shape (all runtimes together).")
@click.option("--min-reps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed calls per runtime and shape, at least.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice([*RUNTIMES, "all"]),
              help="Runtime to time; repeat for several; all = every one. Default: every "
              "installed runtime (eager PyTorch is always timed, the baseline). " + RUNTIME_HELP)
@click.option("--stream", is_flag=True,
              help="Streaming mode: per-step latency with carried state (model_stream.onnx) "
                   "vs recomputing the prefix (model.onnx) at T = 50, 500, 5000; --budget "
                   "applies per T, --shapes, --device and --runtime are not used.")
@domain_errors
def bench(models, out, threads, shapes, device, budget, min_reps, runtimes, stream):
    """Time eager PyTorch and every installed runtime side by side on the artifacts.

    Prints p50/p90 latency, throughput and the speed-up over eager per shape, marking
    the fastest runtime at each shape with *, and writes DIR/<model>/benchmark.json
    (figures, machine, versions, settings) and benchmark.png. Runtimes are called in
    interleaved rounds on one seeded input per shape, all with --threads threads
    (OpenVINO's INFERENCE_NUM_THREADS too) except tract, whose Python bindings run
    single-threaded. The ONNX reference evaluator is in the default set: on these
    graphs it takes ~10 ms at 512x100, slow but not prohibitive. With --stream:
    benchmark_stream.json and .png instead (see pipeline/bench_stream.py).

    \b
    Example:
      python -m pipeline bench --model classifier --threads 1 --shapes 1x1,64x500
      python -m pipeline bench --runtime onnx --runtime openvino --runtime tract
      python -m pipeline bench --model forecaster --stream
    """
    if stream:
        _bench_stream(models, out, threads, budget, min_reps)
        return
    from ..bench import BenchConfig, main, table

    for name in selected(models, out):
        config = BenchConfig(name, out, tuple(shapes), threads, device, budget, min_reps,
                             runtimes=runtimes or None)
        result = main(config, log=lambda s: click.echo(s, err=True))
        click.echo(table(result))
        click.echo(f"-> {out / name}/benchmark.json, benchmark.png")
        if "deployment" in result:      # verified precision pairs: the choice per shape
            from ..precision.choice import table as deployment_table
            click.echo(deployment_table(result["deployment"]))
            click.echo(f"-> {out / name}/deployment.json")


def _bench_stream(models, out, threads, budget, min_reps):
    from ..bench_stream import StreamBenchConfig, main, table

    for name in selected(models, out):
        config = StreamBenchConfig(name, out, threads=threads, budget_s=budget, min_reps=min_reps)
        click.echo(table(main(config, log=lambda s: click.echo(s, err=True))))
        click.echo(f"-> {out / name}/benchmark_stream.json, benchmark_stream.png")
