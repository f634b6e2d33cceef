"""Load test: N concurrent clients call one served model over HTTP or gRPC for a while.

    python -m pipeline loadtest --model-name forecaster_onnx --concurrency 1,16,64
    python -m pipeline loadtest --model-name forecaster_stream_onnx --steps 64
    python -m pipeline loadtest --url 127.0.0.1:8001 --protocol grpc --duration 20
    python -m pipeline loadtest --concurrency 16 --duration 600     # soak: RSS sampled too

Without --url it starts its own tritonserver on the repository (and stops it after), and
samples the resident memory of tritonserver and every backend stub each second (soak.py).
Per concurrency level, each client thread sends requests back to back, one at a time; the
latency of every request is recorded. A stateless model (`<model>_onnx`, `_torchscript`) gets
inputs of shape (batch, seq, F) from a seeded pool; a stream model (`<model>_stream_*`, see
loadstream.py) gets one step per request, each client carrying its own streams' state.
Every answer is compared with the same published artifact run in this process (ONNX Runtime
or TorchScript on the version folder's own file, published.py) within the tolerance its
verification used; for a precision variant, within its accuracy budget (an int8 answer moves
with the batch Triton put it in: published.answer_tolerance). Reports throughput (answers/s),
p50/p90/p99 latency and errors per level, prints a table and writes loadtest.json and
loadtest.png. Any error or wrong answer fails it.

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
    seq: int = 7                    # stateless models: steps per request
    steps: int = 64                 # stream models: steps per stream, one per request
    out: Path | None = None         # folder for loadtest.json / .png; None: not written
    progress: bool = True
    server_pid: int | None = None   # tritonserver started for the run: its RSS is sampled


def reference(model, batch: int, seq: int) -> list[tuple[dict, dict]]:
    """[(wire feeds, expected outputs)]: seeded inputs and the in-process answers of the
    published version (`model`: published.Published) to them."""
    if model.stream:
        raise ServeError(f"{model.name}: a stream model; its clients carry state (loadstream)")
    run = model.runner()
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(POOL):
        feeds = model.sample(rng, batch, seq)   # ids inside the vocabulary, lengths 1..seq
        pool.append(({t.name: t.wire(feeds[t.name]) for t in model.inputs}, run(feeds)))
    return pool


def client(protocol: str, url: str):
    """(tritonclient module, client) for one thread."""
    if protocol == "grpc":
        import tritonclient.grpc as module
        return module, module.InferenceServerClient(url)
    import tritonclient.http as module
    return module, module.InferenceServerClient(url, connection_timeout=30, network_timeout=30)


def infer(module, triton, model: str, feeds: dict, outputs) -> object:
    """One request of numpy `feeds` (wire shapes); the result object."""
    from tritonclient.utils import np_to_triton_dtype
    inputs = []
    for name, x in feeds.items():
        tensor = module.InferInput(name, list(x.shape), np_to_triton_dtype(x.dtype))
        tensor.set_data_from_numpy(x)
        inputs.append(tensor)
    return triton.infer(model, inputs, outputs=[module.InferRequestedOutput(n) for n in outputs])


def close(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> bool:
    return got.size == want.size and np.allclose(got.reshape(want.shape), want, atol=atol, rtol=rtol)


def _worker(index, config, model, pool, stop_at, record, _streams):
    module, triton = client(config.protocol, config.url)
    try:
        i = index   # clients start at different inputs of the pool
        while time.perf_counter() < stop_at:
            feeds, expected = pool[i % len(pool)]
            i += 7
            start = time.perf_counter()
            try:
                result = infer(module, triton, config.model, feeds, expected)
            except Exception as exc:     # a failed request is counted, the run goes on
                record(time.perf_counter() - start, f"{type(exc).__name__}: {exc}", None)
                continue
            latency = time.perf_counter() - start
            wrong = any(not close(result.as_numpy(n), e, model.atol, model.rtol)
                        for n, e in expected.items())
            record(latency, None, wrong)
    finally:
        triton.close()


class LevelProgress:
    """One level's progress on stderr: a tqdm bar on a terminal; in a log (stderr is a file
    or a pipe) a plain line every `every_s` and one at the end, no carriage returns."""

    def __init__(self, config: LoadConfig, concurrency: int, log: Callable[[str], None],
                 stream=None, every_s: float = 5.0):
        import sys
        stream = stream or sys.stderr
        self.what, self.duration = f"{config.protocol} x{concurrency}", config.duration
        self.log, self.every_s, self.last, self.bar = log, every_s, 0.0, None
        self.state = (0.0, 0, 0)
        if stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=config.duration, desc=self.what, unit="s", file=stream,
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s {postfix}")

    def update(self, elapsed: float, answers: int, errors: int) -> None:
        self.state = (min(self.duration, elapsed), answers, errors)
        if self.bar is not None:
            self.bar.n = self.state[0]
            self.bar.set_postfix(answers=answers, errors=errors, refresh=False)
            self.bar.refresh()
        elif elapsed - self.last >= self.every_s:
            self.last = elapsed
            self._line()

    def _line(self) -> None:
        elapsed, answers, errors = self.state
        self.log(f"loadtest {self.what}: {elapsed:.0f}/{self.duration:.0f} s, {answers} answers, "
                 f"{errors} errors")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._line()


def run_level(config: LoadConfig, model, pool, concurrency: int, progress=None) -> dict:
    """One level: `concurrency` client threads for `config.duration` seconds."""
    from .loadstream import check_streams, stream_worker
    from .procs import cpu_seconds, group_pids

    latencies, errors, wrong, lock, streams = [], [], [0], threading.Lock(), []

    def record(latency, error, is_wrong):
        with lock:
            if error:
                errors.append(error)
            else:
                latencies.append(latency)
                wrong[0] += bool(is_wrong)

    # CPU used meanwhile, in cores: this process (the clients) and, when known, tritonserver
    # with its stubs: on a small machine the two share the cores, and that is the bound.
    server_cpu = (lambda: cpu_seconds(group_pids(config.server_pid))) if config.server_pid else None
    cpu = (time.process_time(), server_cpu() if server_cpu else None)
    start = time.perf_counter()
    stop_at = start + config.duration
    worker = stream_worker if model.stream else _worker
    threads = [threading.Thread(target=worker, args=(i, config, model, pool, stop_at, record, streams),
                                daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if progress is not None:
            progress.update(time.perf_counter() - start, len(latencies), len(errors))
    elapsed = time.perf_counter() - start
    client_cores = (time.process_time() - cpu[0]) / elapsed
    server_cores = (server_cpu() - cpu[1]) / elapsed if server_cpu else None
    if model.stream:     # every answer of every stream against the whole sequence, run here
        wrong[0] += check_streams(model, streams)
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "answers": len(latencies), "seconds": round(elapsed, 3),
            "throughput": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors), "wrong": wrong[0],
            "first_error": errors[0] if errors else None, "client_cores": round(client_cores, 2),
            "server_cores": None if server_cores is None else round(server_cores, 2)}


def main(config: LoadConfig, log: Callable[[str], None] = print) -> dict:
    """Run every concurrency level; return (and write) the report."""
    from .published import open_published
    from .soak import RssSampler

    model = open_published(config.registry, config.model)
    pool = None if model.stream else reference(model, config.batch, config.seq)
    sampler = RssSampler(config.server_pid).start() if config.server_pid else None
    levels = []
    try:
        for concurrency in config.concurrency:
            progress = LevelProgress(config, concurrency, log) if config.progress else None
            try:
                levels.append(run_level(config, model, pool, concurrency, progress))
            finally:
                if progress is not None:
                    progress.close()
    finally:
        if sampler is not None:
            sampler.stop()
    base = levels[0]["throughput"] if levels and levels[0]["throughput"] else None
    for level in levels:
        level["speedup"] = level["throughput"] / base if base else None
    report = {"model": config.model, "version": model.version, "protocol": config.protocol,
              "url": config.url, "batch": config.batch,
              "seq": 1 if model.stream else config.seq, "stream": model.stream,
              "steps": config.steps if model.stream else None,
              "duration_s": config.duration, "tolerance": {"atol": model.atol, "rtol": model.rtol},
              "levels": levels, "errors": sum(lv["errors"] for lv in levels),
              "wrong": sum(lv["wrong"] for lv in levels)}
    if sampler is not None:
        report["rss"] = sampler.report()
    if config.out is not None:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
        plot(report, out / "loadtest.png")
        report["files"] = [str(out / "loadtest.json"), str(out / "loadtest.png")]
    return report


def _title(report: dict) -> str:
    shape = (f"one step per request, streams of {report['steps']} steps" if report.get("stream")
             else f"seq {report['seq']}")
    return f"{report['model']} v{report['version']} over {report['protocol']}, batch " \
           f"{report['batch']} x {shape}"


def _cores(level: dict) -> str:
    server = level.get("server_cores")
    return f"{level.get('client_cores', 0):.2f} / " + ("-" if server is None else f"{server:.2f}")


def table(report: dict) -> str:
    lines = [f"{_title(report)}, {report['duration_s']:g} s per level",
             f"{'clients':>7} {'answers':>8} {'answers/s':>10} {'x c1':>5} {'p50 ms':>7} "
             f"{'p90 ms':>7} {'p99 ms':>7} {'errors':>6} {'wrong':>5} {'CPU client/server':>17}"]
    for lv in report["levels"]:
        lines.append(f"{lv['concurrency']:>7} {lv['answers']:>8} {lv['throughput']:>10.0f} "
                     f"{lv['speedup'] or 0:>5.2f} {lv['p50_ms']:>7.2f} {lv['p90_ms']:>7.2f} "
                     f"{lv['p99_ms']:>7.2f} {lv['errors']:>6} {lv['wrong']:>5} "
                     f"{_cores(lv):>17}")
    if report.get("rss"):
        lines.append(report["rss"]["summary"])
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")               # no display needed
    import matplotlib.pyplot as plt

    levels = report["levels"]
    clients = [lv["concurrency"] for lv in levels]
    rss = (report.get("rss") or {}).get("samples")
    fig, axes = plt.subplots(1, 3 if rss else 2, figsize=(15 if rss else 10, 4))
    left, right = axes[:2]
    left.plot(clients, [lv["throughput"] for lv in levels], "o-")
    left.set(xlabel="concurrent clients", ylabel="answers / s", xscale="log", title="throughput")
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        right.plot(clients, [lv[key] for lv in levels], "o-", label=key[:3])
    right.set(xlabel="concurrent clients", ylabel="latency (ms)", xscale="log", title="latency")
    right.legend()
    if rss:    # the soak's memory curve: tritonserver, its stubs, both
        t = [row[0] for row in rss]
        for i, label in ((1, "tritonserver"), (2, "backend stubs"), (3, "total")):
            axes[2].plot(t, [row[i] / 2**20 for row in rss], label=label)
        axes[2].axvline(report["rss"]["warmup_s"], color="grey", linestyle=":", label="warm-up")
        axes[2].set(xlabel="seconds", ylabel="RSS (MiB)", title="resident memory")
        axes[2].legend()
    fig.suptitle(_title(report))
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
