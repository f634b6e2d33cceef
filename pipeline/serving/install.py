"""Where tritonserver and the serving Python live, what dead runs left behind, and what
tritonserver said when it failed.

    installation = locate(Path(".venv-serve"))    # ServeError naming `make serve-env` if not usable
    remove_stale()                                # /dev/shm regions and workspaces of dead runs
    server_failed(log_text, "exited with status 1")   # one line: its own error lines

tritonserver, its libraries, the python backend and one stub per Python version come from the
`nvidia-pytriton` wheel in the serving environment (.venv-serve, `make serve-env`), whose Python
(numpy<2) the stubs run. Every run names its shared-memory regions and its workspace after
its own pid, so leftovers of a run that was killed outright are found by that pid being gone.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServeError

DEFAULT_ENV = Path(__file__).resolve().parents[2] / ".venv-serve"
SHM_PREFIX = "rnnpipe-"                   # + <pid>-<random>-: /dev/shm regions of one run
WORKSPACE_PREFIX = "rnn-pipeline-serve-"  # + <pid>-: a run's backend folder and log


@dataclass(frozen=True)
class Installation:
    """Where tritonserver and the serving Python live."""
    binary: Path
    libs: Path
    python_backend: Path
    stub: Path
    env_bin: Path
    libdir: str


def locate(serve_env: Path) -> Installation:
    python = (Path(serve_env) / "bin" / "python").absolute()   # not resolve(): keep the venv link
    if not python.exists():
        raise ServeError(f"{serve_env}: no serving environment; run `make serve-env`")
    probe = ("import json, sys, sysconfig, numpy; print(json.dumps([sysconfig.get_paths()['purelib'], "
             "sysconfig.get_config_var('LIBDIR'), '%d.%d' % sys.version_info[:2], numpy.__version__]))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if out.returncode:
        raise ServeError(f"{python}: does not run ({(out.stderr.strip().splitlines() or ['?'])[-1]})")
    purelib, libdir, version, numpy_version = json.loads(out.stdout)
    if int(numpy_version.split(".")[0]) >= 2:   # models would load, and answer empty arrays
        raise ServeError(f"{serve_env}: numpy {numpy_version}; the python backend's stub needs "
                         "numpy<2 (rebuild it with `make serve-env`)")
    dist = Path(purelib) / "pytriton" / "tritonserver"
    found = Installation(binary=dist / "bin" / "tritonserver", libs=Path(purelib) / "nvidia_pytriton.libs",
                         python_backend=dist / "backends" / "python",
                         stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                         env_bin=python.parent, libdir=libdir)
    for path in (found.binary, found.libs, found.python_backend, found.stub):
        if not path.exists():
            raise ServeError(f"{path}: missing; rebuild the serving environment (`make serve-env`)")
    return found


def remove_stale(shm: Path = Path("/dev/shm"), tmp: Path | None = None) -> None:
    """Remove the shared-memory regions and workspaces of runs whose process is gone
    (killed: SIGKILL leaves no chance to clean up). Both names carry the owner's pid."""
    tmp = Path(tmp or tempfile.gettempdir())
    for path in [*shm.glob(SHM_PREFIX + "*"), *tmp.glob(WORKSPACE_PREFIX + "*")]:
        prefix = SHM_PREFIX if path.name.startswith(SHM_PREFIX) else WORKSPACE_PREFIX
        pid = path.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def error_lines(log: str) -> list[str]:
    """tritonserver's error lines (glog `E<mmdd> ... file.cc:N] "message"`, or `error: ...`),
    messages only; else its last lines. "CudaDriverHelper has not been initialized" is
    logged by every start on a host without a GPU and says nothing about a failure."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [re.sub(r"^E\d{4} [\d:.]+\s+\d+ \S+\] ", "", line).strip('" ') for line in lines
              if re.match(r"E\d{4} ", line) or line.lower().startswith("error")]
    errors = [line for line in errors if "CudaDriverHelper" not in line]
    return errors or lines[-3:]


def server_failed(log: str, what: str) -> str:
    """One line: what happened to tritonserver, and its own error lines."""
    found = error_lines(log)
    return f"tritonserver {what}" + (": " + " | ".join(found) if found else " (no output)")
