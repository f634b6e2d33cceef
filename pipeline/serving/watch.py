"""The watchdog `serve` runs beside tritonserver: a model whose backend dies or stops answering
is reloaded instead of failing every request until someone restarts the server.

    watchdog = Watchdog(server, interval=1.0, log=print)
    watchdog.start()    # a thread; watchdog.stop() before the server stops
    watchdog.check()    # one round in the caller's thread (tests): the models it healed

Every `interval` seconds, for each model `serve` loaded:
- its backend processes: fewer live stubs (procs.py; a zombie is dead) than its config's
  instance count means one died;
- a probe: one inference request over HTTP/JSON with an input built from the model's own
  config (batch 1, every variable axis 1, zeros; integer inputs 1, the smallest valid length
  of a stream model), which must come back with every output within `probe_timeout`.
A failing model is restarted (`TritonServer.restart_model`: its version folders checked again
as at start, signature included; unload; wait until not ready; load), then probed until it
answers; `serve` logs one line (`healed <model> (<cause>) in <s> s`) and counts it: the
status line, and `rnn_pipeline_model_reloads_total` on the status port's /metrics. While it
restarts, requests to it get an error (not ready, or unavailable), never another model's or
a stale answer, and the other models keep serving: each model has its own stubs. After
`tries` failed restarts it is unloaded and reported (`gave up on <model>`); `serve` keeps
serving the rest, and a SIGHUP reload tries it again.

Why restart rather than `load`: measured on tritonserver 2.51 with the python backend, after
a stub's SIGKILL Triton answers `Stub process '<model>_0' is not healthy.` while the model
stays ready, and a `load` of the unchanged model does nothing; unload, wait, load: 0.23 s.
Probes are requests too: each model's Triton success counter grows by one per interval.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..errors import PipelineError
from . import procs
from .net import http_json

# Triton data type -> the probe's value for it (integers: 1, a valid length)
PROBE_VALUES = {"BOOL": False, "FP16": 0.0, "FP32": 0.0, "FP64": 0.0, "BF16": 0.0}


def probe_request(config: dict) -> dict:
    """A KServe v2 JSON request with the smallest input the model's config allows."""
    batched = int(config.get("max_batch_size", 0)) > 0
    inputs = []
    for tensor in config["input"]:
        dims = [int(d) for d in tensor["dims"]]
        shape = ([1] if batched else []) + [1 if d < 0 else d for d in dims]
        datatype = tensor["data_type"].removeprefix("TYPE_")
        count = 1
        for d in shape:
            count *= d
        inputs.append({"name": tensor["name"], "shape": shape, "datatype": datatype,
                       "data": [PROBE_VALUES.get(datatype, 1)] * count})
    return {"inputs": inputs, "outputs": [{"name": t["name"]} for t in config["output"]]}


class Watchdog(procs.Periodic):
    def __init__(self, server, interval: float = 1.0, tries: int = 3, probe_timeout: float = 10.0,
                 backoff: float = 2.0, log: Callable[[str], None] = print):
        self.server, self.interval, self.tries, self.backoff = server, interval, tries, backoff
        self.probe_timeout, self.log = probe_timeout, log
        self.reloads: dict[str, int] = {}          # model -> times healed
        self.given_up: dict[str, str] = {}         # model -> why it was unloaded
        self.last_recovery: dict[str, float] = {}  # model -> seconds its last healing took
        self._requests: dict[str, dict] = {}       # model -> its probe request
        self._instances: dict[str, int] = {}       # model -> backend instances its config asks
        self._stop = threading.Event()

    # -- lifecycle (start, stop: procs.Periodic; stop it before the server stops) ---------
    def tick(self) -> None:
        try:
            self.check()
        except Exception as exc:   # the watchdog must outlive any one bad round
            self.log(f"watchdog: {type(exc).__name__}: {exc}")

    # -- one round -----------------------------------------------------------------------
    def check(self) -> list[str]:
        """Check every model once; heal the failing ones. Returns the models healed."""
        healed = []
        for model, cause in self._failing().items():
            if self._stop.is_set():
                break
            if self._heal(model, cause, time.monotonic()):
                healed.append(model)
        return healed

    def _failing(self) -> dict[str, str]:
        """{model: why it is failing} for this round, stubs first, then probes."""
        server, failing = self.server, {}
        with server.control:      # no load or unload (SIGHUP) while stubs are counted
            for model in list(self.given_up):
                if model in server.models:     # loaded again by a SIGHUP reload
                    del self.given_up[model]
            live = procs.stubs(server.process.pid)
            for model in list(server.models):
                if self._stop.is_set():
                    break
                why = self.probe(model)      # reads the config (instances) the first time
                wanted, running = self._instances.get(model, 0), len(live.get(model, []))
                if running < wanted:
                    why = f"{wanted - running} of its {wanted} backend stubs died"
                if why:
                    failing[model] = why
        return failing

    def probe(self, model: str) -> str | None:
        """None when `model` answers its probe; else what went wrong."""
        try:
            if model not in self._requests:
                config = self.server.model_config(model)
                self._requests[model] = probe_request(config)
                self._instances[model] = sum(int(g.get("count", 1)) for g in
                                             config.get("instance_group") or [] if "count" in g)
        except (PipelineError, KeyError, TypeError, ValueError) as exc:
            return f"probe: {exc}"
        status, answer = http_json(self.server.urls["http"], f"/v2/models/{model}/infer",
                                   self._requests[model], timeout=self.probe_timeout)
        if status == 200 and isinstance(answer, dict) and len(answer.get("outputs") or []) == \
                len(self._requests[model]["outputs"]):
            return None
        if status == 0:
            return f"probe: no answer within {self.probe_timeout:g} s"
        error = answer.get("error") if isinstance(answer, dict) else answer
        return f"probe: [{status}] {error}"

    def _heal(self, model: str, cause: str, since: float) -> bool:
        why = cause
        for attempt in range(1, self.tries + 1):
            if self._stop.is_set():
                return False
            try:
                self.server.restart_model(model)
                self._requests.pop(model, None)    # its config is read again
                self._instances.pop(model, None)
                deadline = time.monotonic() + self.probe_timeout
                while (why := self.probe(model)) and time.monotonic() < deadline:
                    time.sleep(0.05)
            except PipelineError as exc:     # failed its checks, or Triton refused the load
                why = str(exc)
            if not why:
                took = time.monotonic() - since
                self.reloads[model] = self.reloads.get(model, 0) + 1
                self.last_recovery[model] = took
                self.log(f"healed {model} ({cause}) in {took:.2f} s")
                self.log(self.status_line())
                return True
            self.log(f"restarting {model} (try {attempt} of {self.tries}) failed: {why}")
            self._stop.wait(min(self.backoff * attempt, 5.0))   # a crash loop must not spin
        try:
            self.server.unload_model(model)
        except PipelineError:
            pass                         # not loaded at all: nothing answers for it anyway
        self.server.models.pop(model, None)
        self.given_up[model] = why
        self.log(f"gave up on {model} after {self.tries} tries ({why}); unloaded, the other "
                 "models keep serving; SIGHUP tries it again")
        self.log(self.status_line())
        return False

    # -- what it reports -----------------------------------------------------------------
    def status_line(self) -> str:
        reloads = ", ".join(f"{m} {n}" for m, n in sorted(self.reloads.items())) or "none"
        gone = ", ".join(sorted(self.given_up)) or "none"
        return (f"status: {len(self.server.models)} models serving; reloads: {reloads}; "
                f"given up: {gone}")

    def metrics(self) -> str:
        """Prometheus text exposition of what the watchdog counted."""
        models = sorted(set(self.server.models) | set(self.reloads) | set(self.given_up))
        lines = ["# HELP rnn_pipeline_model_reloads_total Times serve's watchdog reloaded the "
                 "model after its backend died or stopped answering.",
                 "# TYPE rnn_pipeline_model_reloads_total counter"]
        lines += [f'rnn_pipeline_model_reloads_total{{model="{m}"}} {self.reloads.get(m, 0)}'
                  for m in models]
        lines += ["# HELP rnn_pipeline_model_up 1 while serve serves the model; 0 once the "
                  "watchdog gave up on it.", "# TYPE rnn_pipeline_model_up gauge"]
        lines += [f'rnn_pipeline_model_up{{model="{m}"}} {int(m in self.server.models)}'
                  for m in models]
        lines += ["# HELP rnn_pipeline_model_recovery_seconds How long the model's last "
                  "reload took, from noticing the failure to a correct probe answer.",
                  "# TYPE rnn_pipeline_model_recovery_seconds gauge"]
        lines += [f'rnn_pipeline_model_recovery_seconds{{model="{m}"}} {s:.3f}'
                  for m, s in sorted(self.last_recovery.items())]
        return "\n".join(lines) + "\n"


def serve_status(watchdog: Watchdog, host: str, port: int):
    """An HTTP server (own thread) answering GET /metrics with `watchdog.metrics()`.
    Bound before tritonserver starts, so a taken port fails the start. Call .shutdown()."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path.split("?")[0] == "/metrics"
            body = (watchdog.metrics() if found else "GET /metrics\n").encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):   # no line per scrape on serve's stderr
            pass

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="status", daemon=True).start()
    return httpd
