"""Run a real tritonserver on a published model repository, on the CPU, and stop it cleanly.

    python -m pipeline serve --registry exported/model_repository
    with TritonServer(ServeConfig(registry)) as server:   # ready when this returns
        server.urls["http"], server.urls["grpc"]

tritonserver, its libraries, the python backend and one stub per Python version come from the
`nvidia-pytriton` wheel in the serving environment (.venv-serve, `make serve-env`); the
`onnxruntime`, `pytorch` and `openvino` backends are python-based (backends/model.py, run by
the python backend's stub in that environment, which has onnxruntime, torch and openvino).
The repository is served unchanged.

What the command line and environment take care of (each found the hard way):
- the stub's embedded Python needs numpy<2: the serving environment's bin/ goes first on PATH
  (the stub finds its prefix there); `<wheel>/nvidia_pytriton.libs` and that Python's LIBDIR
  go on LD_LIBRARY_PATH (without the first the stub cannot start and the server hangs in
  model loading, without the second it may load another libpython);
- the python backend chmods the stub it runs, so the backend folder is a per-run copy;
- ports: 0 picks explicit free ports on 127.0.0.1 (tritonserver refuses ports 0); the `serve`
  command defaults to Triton's own 8000/8001/8002 instead;
- shared memory: each run gets a unique `shm-region-prefix-name` carrying its pid; its
  /dev/shm regions (and workspace) are removed at stop, those of dead runs at the next start;
- stopping (a drain): SIGINT, Triton's graceful stop (new requests refused), then wait until
  every backend instance has finished its requests (`_drain`), at most `exit_timeout` s,
  then SIGKILL to the whole process group, stubs included;
- model control mode `explicit`: nothing is loaded that `preflight` has not checked, at start
  and at every `reload()`; the repository API (load/unload) is restricted to callers holding
  this run's random key, so no client can load an unchecked version behind its back. (`poll`
  would load whatever appears in the folder, unchecked.) The watchdog (watch.py) restarts a
  failing model through the same API (`restart_model`), after the same check.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServeError
from .install import (DEFAULT_ENV, SHM_PREFIX, WORKSPACE_PREFIX, Installation, error_lines, locate,
                      remove_stale, server_failed)
from .net import check_host, free_ports, http_get, http_json, http_post, port_in_use
from .procs import adopt_orphans, reap_group, stop_with_parent
from .repository import preflight, preflight_model

__all__ = ["DEFAULT_ENV", "SHM_PREFIX", "WORKSPACE_PREFIX", "Installation", "ServeConfig",
           "TritonServer", "error_lines", "locate", "remove_stale", "server_failed"]

BACKEND_SOURCES = [Path(__file__).parent / "backends" / f
                   for f in ("model.py", "naming.py", "openvino_runtime.py")]
SERVED_BACKENDS = ("onnxruntime", "pytorch", "openvino")   # config `backend:` names served
RESTRICT_KEY = "rnn-pipeline-repository-key"
FINALIZED = b"rnn-pipeline backend finalized:"   # backends/model.py: an instance is done


@dataclass(frozen=True)
class ServeConfig:
    registry: Path = Path("exported/model_repository")
    host: str = "127.0.0.1"
    http_port: int = 0          # 0: pick a free port
    grpc_port: int = 0
    metrics_port: int = 0
    serve_env: Path = DEFAULT_ENV
    startup_timeout: float = 180.0
    # Seconds in-flight requests get at a stop (tritonserver's --exit-timeout-secs): it stops
    # taking new requests, waits for those under way, then for open connections to close.
    exit_timeout: int = 5
    log_file: Path | None = None   # None: a file in the run's workspace, removed at stop
    public_key: Path | None = None  # every version must be signed by it (None: manifest only)


class TritonServer:
    """One tritonserver process; a context manager that starts it and always stops it."""

    def __init__(self, config: ServeConfig, log=lambda line: None):
        self.config, self.log = config, log
        self.models: dict[str, list[int]] = {}
        self.urls: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.workspace: Path | None = None
        self.shm_prefix = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
        self._key = secrets.token_hex(16)
        # Loads and unloads come from serve's SIGHUP reload and from the watchdog's healing:
        # one at a time, and none while the watchdog counts a model's stubs.
        self.control = threading.RLock()
        self._adopting = False

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Check every version, start tritonserver, return once every model is ready.
        On any failure (Ctrl-C included) everything started is stopped before it raises."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        check_host(self.config.host)
        self.models = preflight(Path(self.config.registry), self.config.public_key)
        installation = locate(self.config.serve_env)
        remove_stale()
        wanted = {"http": self.config.http_port, "grpc": self.config.grpc_port,
                  "metrics": self.config.metrics_port}
        for name, port in wanted.items():
            if port and port_in_use(self.config.host, port):
                raise ServeError(f"{self.config.host}:{port} ({name} port) is already in use; "
                                 f"choose another --{name}-port, or 0 for a free one")
        # Free ports are picked, then bound by tritonserver: another process may take one
        # in between, so a start that fails on a busy port is retried with new ones.
        for attempt in range(3):
            ports = free_ports(self.config.host, wanted)
            try:
                self._start_once(installation, ports)
                return
            except ServeError as exc:
                # tritonserver: "Socket 'H:P' already in use"; retry only for a port we picked
                busy = re.search(r":(\d+)' already in use", str(exc))
                if not busy or int(busy.group(1)) in wanted.values() or attempt == 2:
                    raise
                self.stop()
                self.log(f"port {busy.group(1)} was taken meanwhile; retrying with others")

    def _start_once(self, installation: Installation, ports: dict[str, int]) -> None:
        self.workspace = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}-"))
        backends = self._backend_dir(installation)
        log_path = Path(self.config.log_file or self.workspace / "tritonserver.log")
        command = [str(installation.binary), f"--model-repository={Path(self.config.registry).resolve()}",
                   f"--backend-directory={backends}", "--model-control-mode=explicit",
                   *(f"--load-model={name}" for name in self.models),
                   "--disable-auto-complete-config", "--strict-readiness=true",
                   f"--http-address={self.config.host}", f"--http-port={ports['http']}",
                   f"--grpc-address={self.config.host}", f"--grpc-port={ports['grpc']}",
                   "--allow-metrics=true", "--allow-gpu-metrics=false",
                   f"--metrics-address={self.config.host}", f"--metrics-port={ports['metrics']}",
                   f"--exit-timeout-secs={self.config.exit_timeout}",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                   f"--http-restricted-api=model-repository:{RESTRICT_KEY}={self._key}",
                   f"--grpc-restricted-protocol=model-repository:{RESTRICT_KEY}={self._key}"]
        env = dict(os.environ)
        env["PATH"] = f"{installation.env_bin}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(installation.libs), installation.libdir, env.get("LD_LIBRARY_PATH")) if p)
        env.pop("PYTHONPATH", None)    # the stub's Python is the serving env's, not the caller's
        env.pop("PYTHONHOME", None)
        self.log_path = log_path
        if not self._adopting:       # the stubs' reaper, should tritonserver die first
            self._adopting = True
            adopt_orphans(True)
        with open(log_path, "ab") as sink:
            self._log_start = sink.tell()     # a kept --log file holds earlier runs too
            # Own session: Ctrl-C in a terminal reaches only us, and stop() can signal the
            # server and every stub it started as one process group.
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=lambda: stop_with_parent(signal.SIGINT))
        host = self.config.host
        self.urls = {"http": f"{host}:{ports['http']}", "grpc": f"{host}:{ports['grpc']}",
                     "metrics": f"http://{host}:{ports['metrics']}/metrics"}
        self._wait_ready()

    def _backend_dir(self, installation: Installation) -> Path:
        """<workspace>/backends: python/ (library, utils, this Python's stub), and this
        package's backend as onnxruntime/, pytorch/ and openvino/model.py (naming.py and
        openvino_runtime.py beside)."""
        backends = self.workspace / "backends"
        shutil.copytree(installation.python_backend, backends / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(installation.stub, backends / "python" / "triton_python_backend_stub")
        for name in SERVED_BACKENDS:
            (backends / name).mkdir()
            for source in BACKEND_SOURCES:
                shutil.copy(source, backends / name / source.name)
        return backends

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(server_failed(self.log_text(), f"exited with status {self.process.returncode}"))
            if http_get(self.urls["http"], "/v2/health/ready") == 200 and self._all_ready():
                return
            time.sleep(0.2)
        raise ServeError(server_failed(self.log_text(), f"not ready after {self.config.startup_timeout:.0f} s"))

    def _all_ready(self) -> bool:
        return all(http_get(self.urls["http"], f"/v2/models/{name}/ready") == 200 for name in self.models)

    def reload(self) -> dict[str, list[int]]:
        """Check the repository again and (re)load every model: newly published versions and
        models are served from then on. A repository failing preflight changes nothing."""
        with self.control:
            models = preflight(Path(self.config.registry), self.config.public_key)
            for name in models:
                self._model_control("load", name)
            self.models = models
            return models

    def restart_model(self, name: str, timeout: float = 30.0) -> list[int]:
        """Check `name`'s version folders again (as at start), unload it, wait until Triton no
        longer reports it ready, stop its old backend stubs, and load it: new stubs. (A `load`
        of an unchanged, loaded model does nothing, even when its stub is dead.) Returns its
        versions."""
        from .procs import alive, stubs

        with self.control:
            versions = preflight_model(Path(self.config.registry) / name, self.config.public_key)
            old = stubs(self.process.pid).get(name, [])
            self.unload_model(name, timeout)
            # The unloaded instances' stubs go: a live one next to a dead one can keep the old
            # version "live" inside Triton (its unload never completing under load), holding
            # its memory until the server stops. Requests still on it fail; none is answered
            # wrong.
            for pid in old:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            self._model_control("load", name)
            self.models[name] = versions
            return versions

    def unload_model(self, name: str, timeout: float = 30.0) -> None:
        """Unload `name` and wait until it is no longer ready (requests to it then fail)."""
        with self.control:
            self._model_control("unload", name)
            deadline = time.monotonic() + timeout
            while self.model_ready(name) and time.monotonic() < deadline:
                time.sleep(0.02)

    def model_ready(self, name: str) -> bool:
        return http_get(self.urls["http"], f"/v2/models/{name}/ready") == 200

    def model_config(self, name: str) -> dict:
        """The loaded model's config as Triton reports it (JSON: inputs, dims, reshape...)."""
        status, config = http_json(self.urls["http"], f"/v2/models/{name}/config")
        if status != 200 or not isinstance(config, dict):
            raise ServeError(f"{name}: no config from tritonserver ({status}: {config})")
        return config

    def _model_control(self, action: str, name: str) -> None:
        status, body = http_post(self.urls["http"], f"/v2/repository/models/{name}/{action}",
                                 headers={RESTRICT_KEY: self._key})
        if status != 200:
            raise ServeError(f"{action}ing {name}: {body or status}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except (AttributeError, OSError):
            return ""

    def _drain(self, process: subprocess.Popen) -> None:
        """SIGINT, tritonserver's graceful stop: it refuses new inference requests, unloads
        every model once the requests under way are done, and exits, all within
        `exit_timeout` s. Unloading is what takes time (a python backend stub's teardown:
        5 s for 8 models here), and nothing is lost by cutting it short once every backend
        instance has finished its requests: this package's backend says so in the log
        (FINALIZED, printed by its finalize()). So: wait for that line from each live stub,
        then stop()'s SIGKILL of the group. With other backends (no such line) or a dead
        stub, it waits for tritonserver to exit by itself or the timeout, as before."""
        from .procs import stubs

        instances = sum(len(pids) for pids in stubs(process.pid).values())
        start = os.path.getsize(self.log_path) if Path(self.log_path).exists() else 0
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + self.config.exit_timeout + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(start)
                    if log.read().count(FINALIZED) >= instances > 0:
                        return
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and its stubs, remove this run's shared memory and workspace."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                self._drain(process)
            try:   # stubs left behind (or a server that would not stop): the whole group
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            # ends when every stub is reaped too: none left as `<defunct>` under init
            reap_group(process.pid)
        if self._adopting:
            self._adopting = False
            adopt_orphans(False)
        for region in Path("/dev/shm").glob(self.shm_prefix + "*"):
            region.unlink(missing_ok=True)
        if self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.workspace = None
