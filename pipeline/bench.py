"""Stage 4: time eager PyTorch and every installed runtime side by side on the artifacts.

    python -m pipeline bench --model classifier --threads 1 --shapes 1x1,1x50,64x200
    python -m pipeline bench --runtime onnx --runtime openvino      # eager is always timed
    python scripts/bench.py
    make bench

Writes `<out>/<model>/benchmark.json` (figures, machine, versions, settings) and
`benchmark.png` (latency per shape and runtime, log scale) and returns the JSON's dict.

Method. Every runtime is called through its `pipeline.runtimes` runner, `run(feeds) ->
outputs` with numpy in and out, so each pays the same conversions; eager is the trained
module in `torch.inference_mode`. Per shape one seeded input is shared by all runtimes;
after a warm-up, interleaved rounds call each runtime for a ~1 ms block, in shuffled
order, so load from other processes hits all of them alike (see `time_round_robin`);
rounds continue until the time budget is spent (at least `min_reps` calls each).
p50/p90 are per call; throughput = batch / p50. Every runtime gets the same thread count
(torch set_num_threads, ORT intra-op, OpenVINO INFERENCE_NUM_THREADS) except tract, whose
Python bindings run on the calling thread only (recorded as 1). Each row says whether it
was the fastest at its shape; the table and the plot mark it.

Where the remaining time goes (one thread; `make bench` on the 2-core dev VM, closing
note of issue 6). The work is tiny: `flops` = 2*B*(S*(F*H + H*H) + H*O) is 61 MFLOP for
the (512, 100) forecaster (F=10, H=20), 10.6 MFLOP for the classifier (F=5, H=8), and
60 / 10 kFLOP at (1, 50). The single-core sgemm peak (`machine.peak_gflops`, a 1024^3
torch.mm) measures 80-95 GFLOP/s, so the bounds are ~0.7 ms, ~0.12 ms, < 1 us.
  - batch 1 is per-call overhead: `sess.run` with numpy feeds costs ~5 us on an Identity
    graph, the If and the few other kernels ~3 us, and onnxruntime's RNN kernel ~0.2 us
    a step (a 1x8x8 or 1x20x20 product plus tanh: plumbing, not arithmetic). The
    classifier's (1, 50) call takes ~19 us, 0.6% of peak; eager nn.RNN takes ~200-300 us,
    so ~12-15x is what this runtime gives, and 20x would need a ~10-15 us call.
  - large batch: each step is one (H, H) x (H, B) Gemm fused with tanh (one kernel per
    Scan step, ~1-2 us of dispatch plus the arithmetic); the recurrence forbids batching
    the steps, and around them memory-bound passes over the transposed input and the
    (S, H, B) projection take about a third of the time. ONNX reaches 8-11% of peak for
    the classifier (H=8: tiny Gemms) and 20-30% for the forecaster; eager 2-11%.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import read_config
from .fsio import atomic_path, atomic_write_json, model_lock
from .inputs import model_feeds
from .layers.chain import flops_per_layer
from .manifest import read_manifest
from .provenance import source_commit, versions
from .runtimes import RUNTIMES, installed, open_runners, resolve_device, select_runtimes

DEFAULT_SHAPES = ((1, 1), (1, 50), (64, 200), (512, 100))
BENCHMARK_JSON, BENCHMARK_PNG = "benchmark.json", "benchmark.png"


@dataclass(frozen=True)
class BenchConfig:
    model: str
    out: Path = Path("exported")
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES    # (batch, seq)
    threads: int = 1              # torch.set_num_threads and ORT intra_op_num_threads
    device: str = "cpu"           # auto | cpu | cuda
    budget_s: float = 3.0         # timing budget per shape, all runtimes together
    min_reps: int = 20            # calls per runtime at least (p90 needs ~10+)
    max_reps: int = 3000          # ... and at most (the tiny shapes would run 10^5)
    warmup: int = 5               # untimed calls per runtime first (allocators, caches)
    seed: int = 0
    plot: bool = True
    runtimes: tuple[str, ...] | None = None   # None: every installed runtime (eager always)


def bench_runtimes(names: tuple[str, ...] | None) -> tuple[str, ...]:
    """Eager torch (the baseline of "vs eager") plus `names`, or every installed runtime."""
    chosen = select_runtimes(names, ()) if names else \
        tuple(r for r in RUNTIMES[1:] if installed(r))
    return ("torch", *(r for r in chosen if r != "torch"))


def time_round_robin(calls: dict[str, Callable[[], object]], budget_s: float,
                     min_reps: int, max_reps: int, warmup: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Per-call times in µs of each callable, measured in interleaved rounds.

    Each round runs every callable for a short block of consecutive calls, in a shuffled
    order. Interleaving spreads drift and other processes' load over all runtimes alike;
    the shuffle matters because a fixed cyclic order always hands the same runtime the
    caches another one just trashed (measured: +50% on a 20 µs ONNX call that always ran
    right after eager). Blocks of ~1 ms (up to 10 calls) time the steady state a server
    calling one model repeatedly sees, not a cold call after a foreign one.
    """
    import random

    names, order = list(calls), random.Random(seed)
    block = {}
    for name in names:
        last = 1_000_000
        for _ in range(warmup):
            t0 = time.perf_counter_ns()
            calls[name]()
            last = time.perf_counter_ns() - t0
        block[name] = min(10, max(1, 1_000_000 // max(last, 1)))   # ~1 ms of calls
    times = {name: [] for name in names}
    deadline = time.perf_counter_ns() + int(budget_s * 1e9)
    while (min(len(t) for t in times.values()) < min_reps
           or (max(len(t) for t in times.values()) < max_reps
               and time.perf_counter_ns() < deadline)):
        order.shuffle(names)
        for name in names:
            fn, out = calls[name], times[name]
            for _ in range(block[name]):
                t0 = time.perf_counter_ns()
                fn()
                out.append(time.perf_counter_ns() - t0)
    return {name: np.asarray(t, dtype=np.float64) / 1e3 for name, t in times.items()}


def flops(spec, batch: int, seq: int) -> int:
    """Multiply-adds x2 of the recurrence (every gate, layer and direction) and the head
    (activations, gate products and bias adds not counted); a chain's: its layers'."""
    if spec.layers:
        return batch * sum(n for _, n in flops_per_layer(spec, seq))
    from .families import family
    h, d, gates = spec.hidden_size, spec.directions, family(spec).gates
    inputs = [spec.input_size] + [h * d] * (spec.num_layers - 1)      # each layer's input
    per_step = sum(d * gates * h * (width + h) for width in inputs)
    return 2 * batch * (seq * per_step + h * d * spec.output_size)


def peak_gflops(n: int = 1024) -> float:
    """Best of a few (n, n) x (n, n) float32 matmuls in torch (its current thread count):
    this machine's sgemm peak, the compute bound the figures are compared with."""
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_elapsed(lambda: torch.mm(a, b)) for _ in range(5))
    return 2 * n ** 3 / best / 1e9


def _elapsed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def main(config: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Benchmark `config.model` in `<out>/<model>/`; write benchmark.json (+ .png); return it."""
    import torch

    device = resolve_device(config.device)
    model_dir = Path(config.out) / config.model
    read_manifest(model_dir)        # a clear error (run export first) before the lock's mkdir
    with model_lock(model_dir):
        # open_runners checks the manifest, then sets torch's threads and ORT's intra-op ones
        runners = open_runners(model_dir, bench_runtimes(config.runtimes), device,
                               config.threads)
        spec = read_config(model_dir)["recipe"].model
        # Precision variants verify let through (issue 23), timed beside the fp32 runtimes;
        # their rows are named "runtime:precision", e.g. "onnx:int8"
        from .precision.choice import bench_hook
        benched = tuple(r.name for r in runners)      # the runtimes asked for (eager too)
        report, variants = bench_hook(model_dir, spec, benched, config.threads, log)
        runners += variants
        shape_times = {}
        peak = peak_gflops()
        rng = np.random.default_rng(config.seed)
        rows = []
        for batch, seq in config.shapes:
            feeds = model_feeds(spec, rng, batch, seq)      # ids in the vocabulary, lengths
            calls = {r.name: (lambda r=r: r.run(feeds)) for r in runners}
            with torch.inference_mode():
                times = time_round_robin(calls, config.budget_s, config.min_reps,
                                         config.max_reps, config.warmup, config.seed)
            shape_times[f"{batch}x{seq}"] = times
            eager_p50 = float(np.median(times["torch"]))
            fastest = min(times, key=lambda name: np.median(times[name]))
            for name, t in times.items():
                p50 = float(np.median(t))
                rows.append({
                    "runtime": name, "batch": batch, "seq": seq, "reps": len(t),
                    "p50_us": p50, "p90_us": float(np.percentile(t, 90)),
                    "mean_us": float(t.mean()), "min_us": float(t.min()),
                    "throughput_seq_per_s": batch / (p50 * 1e-6),
                    "speedup_vs_eager": eager_p50 / p50, "fastest": name == fastest,
                    "gflops": flops(spec, batch, seq) / (p50 * 1e3),
                    "fraction_of_peak": flops(spec, batch, seq) / (p50 * 1e3) / peak})
            log(f"{config.model} ({batch}, {seq}): " + ", ".join(
                f"{r['runtime']} {r['p50_us']:.1f} µs" for r in rows[-len(runners):]))
        result = {
            "model": config.model,
            "settings": {"device": device, "shapes": [list(s) for s in config.shapes],
                         "torch_threads": torch.get_num_threads(),
                         **{"onnxruntime_intra_op_threads":
                            r.impl.get_session_options().intra_op_num_threads
                            for r in runners if r.name == "onnx"},
                         "threads": {r.name: r.threads for r in runners},
                         "providers": {r.name: r.provider for r in runners},
                         "precisions": {r.name: r.precision for r in runners},
                         "budget_s_per_shape": config.budget_s, "min_reps": config.min_reps,
                         "max_reps": config.max_reps, "warmup": config.warmup,
                         "seed": config.seed,
                         "order": "interleaved rounds, shuffled, ~1 ms blocks (<= 10 calls)",
                         "torch_mode": "inference_mode", "io": "numpy in, numpy out"},
            "machine": {**machine(), "peak_gflops": peak},
            "versions": versions(),
            "source_commit": source_commit(),
            "flops": {f"{b}x{s}": flops(spec, b, s) for b, s in config.shapes},
            "flops_per_layer": {f"{b}x{s}": [[words, b * n] for words, n in
                                             flops_per_layer(spec, s)]
                                for b, s in config.shapes},
            "rows": rows,
        }
        atomic_write_json(model_dir / BENCHMARK_JSON, result)
        b, s = config.shapes[-1]
        log(f"{config.model} FLOPs per layer at ({b}, {s}): " + "; ".join(
            f"{words}: {n:,}" for words, n in result["flops_per_layer"][f"{b}x{s}"]))
        if report.get("precisions"):          # deployment.json: the choice per shape
            from .precision.choice import write_deployment
            result["deployment"] = write_deployment(model_dir, spec, report, shape_times,
                                                    config, time_round_robin, log, benched)
        if config.plot:
            with atomic_path(model_dir / BENCHMARK_PNG) as tmp:
                plot(result, tmp)
    return result


def table(result: dict) -> str:
    """The terminal table: p50, p90, throughput and speed-up over eager per shape; the
    fastest runtime at each shape is marked with *."""
    lines = [f"{result['model']}  ({result['settings']['device']}, "
             f"{result['settings']['torch_threads']} thread(s))",
             f"{'batch x seq':>11}  {'runtime':<15} {'p50 µs':>9} {'p90 µs':>9} "
             f"{'seq/s':>10} {'vs eager':>8}"]
    for r in result["rows"]:
        mark = " *" if r.get("fastest") else ""
        lines.append(f"{r['batch']:>5} x{r['seq']:<4}  {r['runtime']:<15} {r['p50_us']:>9.1f} "
                     f"{r['p90_us']:>9.1f} {r['throughput_seq_per_s']:>10.4g} "
                     f"{r['speedup_vs_eager']:>7.2f}x{mark}")
    lines.append("* fastest at that shape")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Grouped bars: p50 latency per shape (x) and runtime (colour), log y, p90 whiskers."""
    import matplotlib
    matplotlib.use("Agg")               # no display needed
    import matplotlib.pyplot as plt

    shapes = [tuple(s) for s in result["settings"]["shapes"]]
    runtimes = list(dict.fromkeys(r["runtime"] for r in result["rows"]))
    labels = {"torch": "eager PyTorch", "torchscript": "TorchScript", "onnx": "ONNX Runtime",
              "openvino": "OpenVINO", "tract": "tract", "onnx-reference": "ONNX reference"}
    by = {(r["runtime"], r["batch"], r["seq"]): r for r in result["rows"]}
    width = 0.8 / len(runtimes)
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(shapes), 4.8), dpi=120)
    for i, name in enumerate(runtimes):
        xs = [j + (i - (len(runtimes) - 1) / 2) * width for j in range(len(shapes))]
        rows = [by[(name, b, s)] for b, s in shapes]
        p50 = [r["p50_us"] for r in rows]
        err = [[0] * len(rows), [r["p90_us"] - r["p50_us"] for r in rows]]
        ax.bar(xs, p50, width, yerr=err, capsize=2, label=labels.get(name, name))
        for x, r in zip(xs, rows):      # speed-up over eager above each bar; * = fastest
            text = f"{r['speedup_vs_eager']:.1f}x" if name != "torch" else ""
            if r.get("fastest"):
                text += "\n*"
            if text:
                ax.annotate(text, (x, r["p90_us"]), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points",
                            fontweight="bold" if r.get("fastest") else "normal")
    ax.set_yscale("log")
    ax.set_xticks(range(len(shapes)), [f"batch {b}\nseq {s}" for b, s in shapes])
    ax.set_ylabel("latency per call, µs (p50; whisker p90)")
    s = result["settings"]
    ax.set_title(f"{result['model']}: latency by runtime, {s['device']}, "
                 f"{s['torch_threads']} thread(s); labels = speed-up over eager, * fastest",
                 fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
