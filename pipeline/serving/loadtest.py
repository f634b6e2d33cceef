"""Load test: N concurrent clients call one served model over HTTP or gRPC for a while.

    python -m pipeline loadtest --model-name forecaster_onnx --concurrency 1,16,64
    python -m pipeline loadtest --url 127.0.0.1:8001 --protocol grpc --duration 20

Without --url it starts its own tritonserver on the repository (and stops it after). Per
concurrency level, each client thread sends requests back to back, one at a time, each one of
a pool of seeded inputs of shape (batch, seq, F); the latency of every request is recorded.
Every answer is compared with the in-process result of the same published artifact (ONNX
Runtime or TorchScript in this process, on the version folder's own file) within the spec's
tolerance. Reports throughput (answers/s), p50/p90/p99 latency and errors per level, prints
a table and writes loadtest.json and loadtest.png. Any error or wrong answer fails the run.

What bounds the numbers here: clients and server share the machine's cores; the client pays
Python and protocol encoding per request, the server HTTP/gRPC handling, one hop into the
python backend's stub over shared memory, and the model run (tens of microseconds at batch 1).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ServeError
from ..specs import SPECS

POOL = 16            # distinct inputs per run; answers to each are known in advance


@dataclass(frozen=True)
class LoadConfig:
    url: str                        # host:port of the protocol's endpoint
    registry: Path                  # the repository served (for the in-process reference)
    model: str = "forecaster_onnx"  # Triton model name
    protocol: str = "grpc"          # "grpc" or "http"
    concurrency: tuple[int, ...] = (1, 16, 64)
    duration: float = 10.0          # seconds per concurrency level
    batch: int = 1
    seq: int = 7
    out: Path | None = None         # folder for loadtest.json / .png; None: not written
    progress: bool = True


def reference(registry: Path, model: str, batch: int, seq: int):
    """(spec, published version, [(feeds, expected)]): seeded inputs and the in-process
    answers of the newest published version of `model`, from its own version folder."""
    from ..manifest import check_manifest
    from ..publishing.publish import VERSION_DIR
    from ..publishing.triton import BACKENDS, io_names
    from ..runtimes import load_runner

    folder = Path(registry) / model
    versions = sorted(int(v.name) for v in folder.glob("*") if VERSION_DIR.fullmatch(v.name))
    if not versions:
        raise ServeError(f"{folder}: no published version to check answers against")
    version_dir = folder / str(versions[-1])
    manifest = check_manifest(version_dir)
    spec, runtime = SPECS[manifest["model"]], manifest["runtime"]
    if runtime not in ("onnx", "torchscript"):
        raise ServeError(f"{model}: loadtest drives the stateless models (<model>_onnx, "
                         "<model>_torchscript); a stream model also takes lengths and state")
    runner = load_runner(runtime, spec, version_dir / BACKENDS[runtime][3], threads=1)
    name_in, name_out = io_names(spec, runtime)
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(POOL):
        x = rng.standard_normal((batch, seq, spec.input_size)).astype(spec.dtype)
        pool.append(({name_in: x}, {name_out: runner.run({spec.input_name: x})[spec.output_name]}))
    return spec, versions[-1], pool


def _client(protocol: str, url: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
        return module, module.InferenceServerClient(url)
    import tritonclient.http as module
    return module, module.InferenceServerClient(url, connection_timeout=30, network_timeout=30)


def _worker(index, config, pool, tolerance, stop_at, record):
    module, client = _client(config.protocol, config.url)
    try:
        i = index   # clients start at different inputs of the pool
        while time.perf_counter() < stop_at:
            feeds, expected = pool[i % len(pool)]
            i += 7
            inputs = []
            for name, x in feeds.items():
                tensor = module.InferInput(name, list(x.shape), "FP32" if x.dtype == np.float32 else "INT64")
                tensor.set_data_from_numpy(x)
                inputs.append(tensor)
            outputs = [module.InferRequestedOutput(n) for n in expected]
            start = time.perf_counter()
            try:
                result = client.infer(config.model, inputs, outputs=outputs)
            except Exception as exc:     # a failed request is counted, the run goes on
                record(time.perf_counter() - start, f"{type(exc).__name__}: {exc}", None)
                continue
            latency = time.perf_counter() - start
            wrong = any(not np.allclose(result.as_numpy(n), e, atol=tolerance.atol, rtol=tolerance.rtol)
                        for n, e in expected.items())
            record(latency, None, wrong)
    finally:
        client.close()


def run_level(config: LoadConfig, pool, tolerance, concurrency: int, bar=None) -> dict:
    latencies, errors, wrong, lock = [], [], [0], threading.Lock()

    def record(latency, error, is_wrong):
        with lock:
            if error:
                errors.append(error)
            else:
                latencies.append(latency)
                wrong[0] += bool(is_wrong)

    start = time.perf_counter()
    stop_at = start + config.duration
    threads = [threading.Thread(target=_worker, args=(i, config, pool, tolerance, stop_at, record),
                                daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if bar is not None:
            bar.n = min(config.duration, time.perf_counter() - start)
            bar.set_postfix(answers=len(latencies), errors=len(errors), refresh=False)
            bar.refresh()
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "answers": len(latencies), "seconds": round(elapsed, 3),
            "throughput": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors), "wrong": wrong[0],
            "first_error": errors[0] if errors else None}


def main(config: LoadConfig, log: Callable[[str], None] = print) -> dict:
    """Run every concurrency level; return (and write) the report."""
    spec, version, pool = reference(config.registry, config.model, config.batch, config.seq)
    tolerance = spec.tolerance("cpu")
    levels = []
    for concurrency in config.concurrency:
        bar = None
        if config.progress:
            from tqdm import tqdm
            bar = tqdm(total=config.duration, desc=f"{config.protocol} x{concurrency}",
                       unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")
        try:
            levels.append(run_level(config, pool, tolerance, concurrency, bar))
        finally:
            if bar is not None:
                bar.close()
    base = levels[0]["throughput"] if levels and levels[0]["throughput"] else None
    for level in levels:
        level["speedup"] = level["throughput"] / base if base else None
    report = {"model": config.model, "version": version, "protocol": config.protocol,
              "url": config.url, "batch": config.batch, "seq": config.seq,
              "duration_s": config.duration, "tolerance": vars(tolerance), "levels": levels,
              "errors": sum(lv["errors"] for lv in levels), "wrong": sum(lv["wrong"] for lv in levels)}
    if config.out is not None:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(report, out / "loadtest.png")
        report["files"] = [str(out / "loadtest.json"), str(out / "loadtest.png")]
    return report


def table(report: dict) -> str:
    lines = [f"{report['model']} v{report['version']} over {report['protocol']}, batch "
             f"{report['batch']} x seq {report['seq']}, {report['duration_s']:g} s per level",
             f"{'clients':>7} {'answers':>8} {'answers/s':>10} {'x c1':>5} {'p50 ms':>7} "
             f"{'p90 ms':>7} {'p99 ms':>7} {'errors':>6} {'wrong':>5}"]
    for lv in report["levels"]:
        lines.append(f"{lv['concurrency']:>7} {lv['answers']:>8} {lv['throughput']:>10.0f} "
                     f"{lv['speedup'] or 0:>5.2f} {lv['p50_ms']:>7.2f} {lv['p90_ms']:>7.2f} "
                     f"{lv['p99_ms']:>7.2f} {lv['errors']:>6} {lv['wrong']:>5}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")               # no display needed
    import matplotlib.pyplot as plt

    levels = report["levels"]
    clients = [lv["concurrency"] for lv in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(clients, [lv["throughput"] for lv in levels], "o-")
    left.set(xlabel="concurrent clients", ylabel="answers / s", xscale="log", title="throughput")
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        right.plot(clients, [lv[key] for lv in levels], "o-", label=key[:3])
    right.set(xlabel="concurrent clients", ylabel="latency (ms)", xscale="log", title="latency")
    right.legend()
    fig.suptitle(f"{report['model']} over {report['protocol']}, batch {report['batch']} x "
                 f"seq {report['seq']}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
