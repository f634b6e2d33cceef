"""The choice: the fastest (runtime, precision) pair within budget, per shape.

    python -m pipeline bench --model classifier --threads 1      # writes deployment.json

bench times every pair verify let through (fp32 runtimes that passed its tolerance rule,
variant pairs within the budget) beside eager fp32, and this module turns its rows into
`<out>/<model>/deployment.json`: per shape (a stream step at batch 1, then bench's shapes)
the fastest pair, its p50, eager's p50 in the same run, the speed-up and the pair's
error figures from verification.json. A pair verify failed, or did not run, is never timed
nor chosen; `require_pair` is the one-line refusal other stages use for it.

    >>> entry = require_pair(report, "openvino", "bf16")   # PipelineError naming the figures
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PipelineError
from . import variant
from .budget import describe, f32_note

DEPLOYMENT = "deployment.json"
# Runtimes a deployment can serve (Triton backends: onnxruntime, openvino, pytorch)
DEPLOYABLE = ("onnx", "openvino", "torchscript")
STREAM_SHAPE = "stream step 1x1"


def pair_name(runtime: str, precision: str) -> str:
    return f"{runtime}:{precision}"


def undeployable(runtime: str, precision: str) -> str | None:
    """Why a verified pair cannot be served as verified on this CPU, or None. Triton's
    openvino backend has no parameter that asks for f32 (openvino_backend src/openvino.cc
    ParseParameters: HINT_BF16 only), so on a CPU with bf16 units OpenVINO compiles the
    f32 pair in bf16: that pair is timed by bench but never chosen (serve refuses it too)."""
    from .bf16 import cpu_has_bf16
    if (runtime, precision) == ("openvino", "fp32") and cpu_has_bf16():
        return ("Triton's openvino backend cannot keep it in f32 on this CPU (bf16 units: "
                "OpenVINO's default is bf16); openvino:bf16 is the pair it serves")
    return None


def entries(report: dict) -> dict[tuple[str, str], dict]:
    return {(e["runtime"], e["precision"]): e for e in report.get("precisions", [])}


def usable(report: dict) -> dict[tuple[str, str], dict]:
    """The pairs verify let through: fp32 runtimes that passed, variants within budget."""
    return {k: e for k, e in entries(report).items() if e.get("passed")}


def require_pair(report: dict, runtime: str, precision: str) -> dict:
    """The verified entry of (runtime, precision), or a one-line PipelineError naming the
    pair and its figures (failed), or saying it was never verified."""
    e = entries(report).get((runtime, precision))
    if precision == "fp32" and e is None and any(
            r.get("name") == runtime for r in report.get("runtimes", [])):
        e = {"runtime": runtime, "precision": "fp32", "passed": report.get("passed")}
    if e is None:
        from . import variant
        fp32 = [(r["name"], "fp32") for r in report.get("runtimes", [])
                if r.get("name") and r.get("passed")]
        listed = ", ".join(pair_name(*k) for k in dict.fromkeys([*fp32, *entries(report)])) \
            or "none"
        runs_on = variant(precision).runtimes if precision != "fp32" else (runtime,)
        how = (f"run verify --runtime {runtime}" if precision == "fp32" else
               f"{precision} runs on {', '.join(runs_on)} only" if runtime not in runs_on else
               f"export it with --precision {precision} and run verify")
        raise PipelineError(f"{pair_name(runtime, precision)} was not verified for "
                            f"{report.get('model')} (verified pairs: {listed}); {how}")
    if not e.get("passed"):
        raise PipelineError(f"{report.get('model')}: refused: {describe(e)}")
    return e


def read_report(model_dir: Path) -> dict:
    """verification.json of a model folder; PipelineError when missing or unreadable."""
    import json
    path = Path(model_dir) / "verification.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise PipelineError(f"{path}: missing or unreadable; run `python -m pipeline verify "
                            f"--model {Path(model_dir).name}` first") from None


def verified_pair(model_dir: Path, runtime: str, precision: str) -> dict:
    """The pair's verification entry, checked against the files on disk (manifest), or a
    one-line PipelineError."""
    from ..manifest import check_manifest
    manifest = check_manifest(model_dir)
    report = read_report(model_dir)
    if report.get("artifacts") != manifest["files"]:
        raise PipelineError(f"{Path(model_dir) / 'verification.json'}: judged other files "
                            "than those on disk; run verify again")
    return require_pair(report, runtime, precision)


def open_verified_pair(model_dir: Path, runtime: str, precision: str, threads: int | None):
    """The runner of a verified (runtime, precision) pair of a model folder (score uses it)."""
    from ..checkpoint import read_config
    verified_pair(model_dir, runtime, precision)
    spec = read_config(model_dir)["recipe"].model
    return load_pair(model_dir, spec, runtime, precision, {}, threads)


def load_pair(model_dir: Path, spec, runtime: str, precision: str, report: dict,
              threads: int | None, stream: bool = False):
    """The runner of a verified variant pair (named "runtime:precision")."""
    from ..manifest import read_manifest
    v = variant(precision)
    entry = read_manifest(model_dir).get("precisions", {}).get(precision, {})
    name = v.artifact(entry, stream)
    if name is None:
        return None
    runner = v.load(runtime, spec, Path(model_dir) / name, threads, stream=stream)
    if stream:
        runner.inputs = tuple(t.name for t in spec.stream_inputs)
        runner.outputs = tuple(t.name for t in spec.stream_outputs)
    runner.name = pair_name(runtime, precision)
    return runner


def load_variant(runtime: str, precision: str, spec, path: Path, threads: int | None,
                 stream: bool):
    """A runner of one file in a (runtime, precision) pair (a published version folder's)."""
    if precision == "fp32":
        from ..runtimes import load_runner, load_stream_runner
        return (load_stream_runner if stream else load_runner)(runtime, spec, path, "cpu",
                                                               threads)
    runner = variant(precision).load(runtime, spec, path, threads, stream=stream)
    if stream:
        runner.inputs = tuple(t.name for t in spec.stream_inputs)
        runner.outputs = tuple(t.name for t in spec.stream_outputs)
    runner.name = pair_name(runtime, precision)     # what score and predict print
    return runner


def stream_runners(model_dir: Path, spec, report: dict, threads: int,
                   runtimes: tuple[str, ...] | None = None) -> list:
    """Eager's stream module (the baseline) and every usable pair's stream artifact (on
    `runtimes` only, where given: those bench was asked for)."""
    from ..checkpoint import load_weights
    from ..families import family
    from ..runtimes import STREAM_ARTIFACTS, load_stream_runner
    from ..runtimes.pytorch import TorchRunner

    if spec.layers:            # a chain: its eager stream reference (a batch-1 step is one row)
        runners = [load_stream_runner("torch", spec, model_dir, "cpu", threads)]
    else:
        eager = family(spec).stream_module(load_weights(model_dir, spec), spec).eval()
        runners = [TorchRunner("torch", spec, "cpu", threads, eager,
                               tuple(t.name for t in spec.stream_inputs),
                               tuple(t.name for t in spec.stream_outputs))]
    for (runtime, precision) in usable(report):
        if runtimes is not None and runtime not in runtimes:
            continue
        if precision == "fp32":
            if runtime not in DEPLOYABLE:
                continue         # tract and the reference evaluator: not served
            name = STREAM_ARTIFACTS.get(runtime, STREAM_ARTIFACTS["onnx"])
            r = load_stream_runner(runtime, spec, Path(model_dir) / name, "cpu", threads)
            r.name = pair_name(runtime, "fp32")
        else:
            r = load_pair(model_dir, spec, runtime, precision, report, threads, stream=True)
        if r is not None:
            runners.append(r)
    return runners


def stream_feeds(spec) -> dict[str, np.ndarray]:
    """One step at batch 1 (a chain's token id inside its vocabulary), zero states."""
    from ..inputs import sample_input
    feeds = {spec.input_name: sample_input(spec, np.random.default_rng(0), 1, 1),
             spec.lengths_name: np.ones(1, np.int64)}
    feeds.update({t.name: np.zeros((1, *t.shape[1:]), np.float32)
                  for t in spec.stream_inputs[2:]})
    return feeds


def deployment(model: str, report: dict, shapes: dict[str, dict[str, np.ndarray]]) -> dict:
    """deployment.json from per-shape times ({shape: {runner name: µs array}})."""
    figures = {pair_name(*k): e for k, e in usable(report).items() if k[0] in DEPLOYABLE}
    excluded = {n: why for n, e in figures.items()
                if (why := undeployable(e["runtime"], e["precision"]))}
    figures = {n: e for n, e in figures.items() if n not in excluded}
    chosen = {}
    for shape, times in shapes.items():
        eager = float(np.median(times["torch"]))
        pairs = {n: float(np.median(t)) for n, t in
                 ((n if ":" in n else pair_name(n, "fp32"), t) for n, t in times.items())
                 if n in figures}
        rows = sorted(({"pair": n, "p50_us": p, "speedup_vs_eager": eager / p}
                       for n, p in pairs.items()), key=lambda r: r["p50_us"])
        best = rows[0] if rows else None
        e = figures.get(best["pair"]) if best else None
        chosen[shape] = {
            "runtime": e["runtime"] if e else None, "precision": e["precision"] if e else None,
            **({"f32_layers": e["f32_layers"]} if e and "f32_layers" in e else {}),
            "artifact": (e.get("stream_artifact") if shape == STREAM_SHAPE and e
                         and e["precision"] != "fp32" else e.get("artifact")) if e else None,
            "p50_us": best["p50_us"] if best else None, "eager_p50_us": eager,
            "speedup_vs_eager": best["speedup_vs_eager"] if best else None,
            "errors": {k: e.get(k) for k in ("figures", "stream", "stream_ragged")}
            if e else None,
            "candidates": rows}
    return {"model": model, "artifacts": report.get("artifacts"), "budget": report.get("budget"),
            "refused": [describe(e) for e in report.get("precisions", [])
                        if e["precision"] != "fp32" and not e.get("passed")],
            "not_deployable": excluded, "shapes": chosen}


def table(dep: dict) -> str:
    lines = [f"{dep['model']}: deployment (fastest verified pair within budget per shape)",
             f"{'shape':>16}  {'pair':<22} {'p50 µs':>9} {'eager µs':>9} {'vs eager':>8} "
             f"{'max err/std':>11}"]
    for shape, c in dep["shapes"].items():
        f = (c.get("errors") or {}).get("figures") or {}
        err = f"{100 * f['max_rel_std']:.3g}%" if f else "-"
        pair = pair_name(c["runtime"], c["precision"]) if c["runtime"] else "(none)"
        if c.get("f32_layers"):            # a bf16 pair keeping layers f32: footnoted below
            pair += " [f32]" if c["f32_layers"] == "all" else " [mixed]"
        lines.append(f"{shape:>16}  {pair:<22} {c['p50_us'] or float('nan'):>9.1f} "
                     f"{c['eager_p50_us']:>9.1f} {c['speedup_vs_eager'] or 0:>7.2f}x {err:>11}")
    lines += [f"{pair_name(c['runtime'], c['precision'])} at {shape}: {f32_note(c)}"
              for shape, c in dep["shapes"].items() if c.get("f32_layers")]
    lines += [f"refused: {r}" for r in dep["refused"]]
    lines += [f"not deployable here: {n}: {why}"
              for n, why in dep.get("not_deployable", {}).items()]
    return "\n".join(lines)


def bench_hook(model_dir: Path, spec, runtimes: tuple[str, ...], threads: int,
               log=print) -> tuple:
    """(verification report, runners of the usable variant pairs on `runtimes`) for bench;
    ({}, []) without a report, or with one that judged other files than those on disk
    (export ran since verify): its pairs are not the files bench would time."""
    from ..manifest import read_manifest
    try:
        report = read_report(model_dir)
    except PipelineError:
        return {}, []
    if report.get("artifacts") != read_manifest(model_dir)["files"]:
        if report.get("precisions"):
            log(f"{spec.name}: verification.json judged other files than those on disk; "
                "no deployment.json until verify runs again")
        return {}, []
    runners = [load_pair(model_dir, spec, rt, p, report, threads)
               for rt, p in usable(report) if p != "fp32" and rt in runtimes]
    return report, [r for r in runners if r is not None]


def write_deployment(model_dir: Path, spec, report: dict, shape_times: dict, config,
                     timer, log=print, runtimes: tuple[str, ...] | None = None) -> dict:
    """Time a stream step (batch 1, state carried) of eager and every usable pair on
    `runtimes` (bench's; None: all) with `timer` (bench's time_round_robin), add it to
    bench's per-shape times and write deployment.json; return it."""
    import torch

    from ..fsio import atomic_write_json
    shapes = {}
    if spec.has_stream:
        runners = stream_runners(model_dir, spec, report, config.threads, runtimes)
        feeds = stream_feeds(spec)
        calls = {r.name: (lambda r=r: r.run(feeds)) for r in runners}
        with torch.inference_mode():
            shapes[STREAM_SHAPE] = timer(calls, config.budget_s, config.min_reps,
                                         config.max_reps, config.warmup, config.seed)
        log(f"{spec.name} stream step: " + ", ".join(
            f"{n} {np.median(t):.1f} µs" for n, t in shapes[STREAM_SHAPE].items()))
    shapes.update(shape_times)
    dep = deployment(spec.name, report, shapes)
    dep["threads"] = config.threads
    atomic_write_json(Path(model_dir) / DEPLOYMENT, dep)
    return dep
