"""Bad input and faults: one-line errors, no traceback, nothing left running or in /dev/shm;
the `serve` command's own lifecycle (ready line, SIGTERM, exit 0); backends generic over the
config (several inputs and outputs, INT64, reshape, as stream models have)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import ServeError
from pipeline.serving.procs import alive
from pipeline.serving.server import SHM_PREFIX
from tests.serving.conftest import stop_and_check
from tests.test_cli import one_line_error

ROOT = Path(__file__).resolve().parents[2]


def shm_regions(*pids) -> set[str]:
    """/dev/shm regions of the runs started by `pids` (default: this process, where CliRunner
    runs `serve`): other engineers' servers on this machine have regions of their own."""
    return {p.name for pid in pids or (os.getpid(),)
            for p in Path("/dev/shm").glob(f"{SHM_PREFIX}{pid}-*")}


# Tests never take Triton's default ports (another server on this machine may hold them).
FREE_PORTS = ("--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--status-port", "0")


def serve(*args):
    return CliRunner().invoke(cli, ["serve", *FREE_PORTS, *map(str, args)])


def copy_registry(published, tmp_path, models=("forecaster_onnx",)) -> Path:
    registry = tmp_path / "registry"
    for model in models:
        shutil.copytree(published["registry"] / model, registry / model)
    for path in registry.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return registry


@pytest.fixture(scope="module")
def lean(published, tmp_path_factory):
    """`published`, its repository cut to classifier_onnx (signed as published). The lifecycle
    tests below start tritonserver for its processes, ports and signals, not for its models,
    and every model loaded is one more backend stub (a Python importing its runtime) started
    and stopped: 8 models made a start several times dearer."""
    registry = copy_registry(published, tmp_path_factory.mktemp("lean"), ("classifier_onnx",))
    return {**published, "registry": registry}


def test_missing_or_unpublished_registry(tmp_path):
    before = shm_regions()
    result = serve("--registry", tmp_path / "nowhere")
    one_line_error(result, "no such model repository")
    (tmp_path / "empty").mkdir()
    result = serve("--registry", tmp_path / "empty")
    one_line_error(result, "no published model version")
    assert shm_regions() == before


def test_version_failing_its_manifest_is_refused_before_start(published, tmp_path):
    registry = copy_registry(published, tmp_path)
    (registry / "forecaster_onnx" / "1" / "model.onnx").write_bytes(b"not the published model")
    result = serve("--registry", registry)
    one_line_error(result, "forecaster_onnx version 1 is not served", "model.onnx")


def test_signature_from_another_key_or_a_rewritten_manifest_is_refused(published, tmp_path):
    """With --public-key, a version must be signed by that key: another key's signature, or
    a model file swapped with its manifest rewritten to match (the manifest check alone
    passes), is a one-line refusal before tritonserver starts."""
    import json

    from pipeline.manifest import file_entry
    from pipeline.publishing.signing import keygen

    other = keygen(tmp_path / "other")
    result = serve("--registry", published["registry"], "--public-key", other["public"])
    one_line_error(result, "version 1 is not served")
    registry = copy_registry(published, tmp_path)
    version = registry / "forecaster_onnx" / "1"
    (version / "model.onnx").write_bytes((version / "model.onnx").read_bytes() + b"\0")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = file_entry(version / "model.onnx")
    (version / "manifest.json").write_text(json.dumps(manifest))
    result = serve("--registry", registry, "--public-key", published["keys"]["public"])
    one_line_error(result, "forecaster_onnx version 1 is not served")
    assert running_on(registry) == []


@pytest.mark.parametrize("which", ["grpc", "status"])
def test_port_in_use_is_named(published, which):
    """A taken port: one line naming it and the flag that changes it; nothing left running."""
    before = shm_regions()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--registry", published["registry"], f"--{which}-port", port)
    one_line_error(result, f"127.0.0.1:{port} ({which} port) is already in use; choose "
                           f"another --{which}-port")
    assert running_on(published["registry"]) == [] and shm_regions() == before


def test_default_ports_are_tritons():
    """`curl localhost:8000/v2/health/ready` works as every Triton guide says."""
    from pipeline.cli import serve as command
    defaults = {p.name: p.default for p in command.params}
    assert (defaults["http_port"], defaults["grpc_port"], defaults["metrics_port"]) == (8000, 8001, 8002)


def test_port_taken_after_the_check(lean, monkeypatch):
    """A port taken between the check and tritonserver's bind: auto ports are picked again;
    an explicit one is an error naming it, in tritonserver's words."""
    import pipeline.serving.server as server_module

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        picks = []
        real = server_module.free_ports

        def first_pick_busy(host, wanted):
            picks.append(real(host, wanted))
            if len(picks) == 1:
                picks[0]["http"] = port
            return picks[-1]

        monkeypatch.setattr(server_module, "free_ports", first_pick_busy)
        said = []
        server = server_module.TritonServer(server_module.ServeConfig(lean["registry"]), log=said.append)
        server.start()
        try:
            assert len(picks) == 2 and server.urls["http"] != f"127.0.0.1:{port}"
            assert f"port {port} was taken meanwhile" in said[0]
        finally:
            stop_and_check(server)
        monkeypatch.setattr(server_module, "port_in_use", lambda host, port: False)
        with pytest.raises(ServeError, match=f"Socket '127.0.0.1:{port}' already in use"):
            server_module.TritonServer(server_module.ServeConfig(lean["registry"], http_port=port)).start()


def test_leftovers_of_dead_runs_are_removed(tmp_path):
    """Shared-memory regions and workspaces named after a dead pid go; a live run's and
    anything else's stay."""
    from pipeline.serving.server import WORKSPACE_PREFIX, remove_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir(), tmp.mkdir()
    for path in (shm / f"{SHM_PREFIX}{dead}-ab-region", shm / f"{SHM_PREFIX}{os.getpid()}-cd-r",
                 shm / "someone-else"):
        path.write_bytes(b"x")
    for path in (tmp / f"{WORKSPACE_PREFIX}{dead}-x1", tmp / f"{WORKSPACE_PREFIX}{os.getpid()}-x2"):
        (path / "backends").mkdir(parents=True)
    remove_stale(shm, tmp)
    assert sorted(p.name for p in shm.iterdir()) == sorted([f"{SHM_PREFIX}{os.getpid()}-cd-r",
                                                           "someone-else"])
    assert [p.name for p in tmp.iterdir()] == [f"{WORKSPACE_PREFIX}{os.getpid()}-x2"]


def test_tritonserver_failing_to_start_reports_its_errors_and_leaves_nothing(published, tmp_path):
    """The config names an input the graph lacks: the backend refuses it at load, tritonserver
    exits, and its own error lines are the message."""
    registry = copy_registry(published, tmp_path)
    config = registry / "forecaster_onnx" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "input"', 'name: "features"'))
    before = shm_regions()
    server = None
    with pytest.raises(ServeError) as caught:
        from pipeline.serving.server import ServeConfig, TritonServer
        server = TritonServer(ServeConfig(registry))
        server.start()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("tritonserver exited with status")
    assert "config inputs ['features'] != graph inputs ['input']" in message
    # start() raised: it had stopped everything it started
    assert server.process is None and server.workspace is None
    assert running_on(registry) == []
    assert shm_regions() == before
    result = serve("--registry", registry)
    one_line_error(result, "graph inputs")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_runs_until_stopped_and_cleans_up(lean, stop_signal):
    """Ctrl-C (SIGINT) or SIGTERM: exit 0, nothing left. SIGINT works even though a
    subprocess started here, like `cmd &` in a shell, may inherit it ignored."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", *FREE_PORTS, "--registry",
                             str(lean["registry"])], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("tritonserver ready: HTTP 127.0.0.1:"), proc.stderr.read()
        servers = _children(proc.pid)
        assert servers, "no tritonserver under serve"
        proc.send_signal(signal.SIGHUP)       # check the repository again, load what is new
        listed = [proc.stdout.readline()]
        while listed[-1] and not listed[-1].startswith("reloaded:"):   # the models, then it
            listed.append(proc.stdout.readline())
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=60)
        out = "".join(listed) + out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "reloaded: classifier_onnx v" in out and out.rstrip().endswith("tritonserver stopped")
    assert "Traceback" not in err
    assert [p for p in servers if Path(f"/proc/{p}").exists()] == []
    assert shm_regions(proc.pid) == set()


def test_killed_serve_takes_tritonserver_with_it(lean):
    """SIGKILL cannot be handled: tritonserver (own session) is told by the kernel
    (parent-death signal) and stops with its stubs; the next start removes the shm regions
    and the workspace left behind."""
    import tempfile

    from pipeline.serving.server import WORKSPACE_PREFIX, remove_stale

    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", *FREE_PORTS, "--registry",
                             str(lean["registry"])], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().startswith("tritonserver ready")
        servers = _children(proc.pid)
        stubs = [c for s in servers for c in _children(s)]
        assert servers and stubs
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in servers + stubs):
        time.sleep(0.2)
    assert [p for p in servers + stubs if Path(f"/proc/{p}").exists()] == []
    workspaces = lambda: list(Path(tempfile.gettempdir()).glob(f"{WORKSPACE_PREFIX}{proc.pid}-*"))  # noqa: E731
    # SIGKILL: the workspace is left behind until the next start, this one or any other
    # server's on this machine (another test run may already have removed it)
    remove_stale()
    assert shm_regions(proc.pid) == set() and workspaces() == []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_make_serve_stops_when_make_is_stopped(lean, tmp_path, stop_signal):
    """The signal goes to make alone, as a supervisor stopping the target sends it: make
    passes SIGTERM on to serve; a SIGKILL'd make cannot, and serve --stop-with-parent (the
    Makefile's) hears of it from the kernel. Either way serve drains and stops: nothing left."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model_repository").symlink_to(lean["registry"])
    # -o: the venv stamps taken as up to date. Without it, a checkout whose pyproject.toml or
    # constraints are newer than .venv/.installed (any edit since `make install`) had this
    # test run pip install before serving: up to a minute of the suite's time, here.
    make = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "-o", ".venv-serve/.installed",
                             "serve", f"OUT={out}",
                             f"KEYS={Path(lean['keys']['public']).parent}",
                             "SERVE_ARGS=" + " ".join(FREE_PORTS)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = make.stdout.readline()
        assert first.startswith("tritonserver ready"), first + make.stderr.read()
        serves = _children(make.pid)
        servers = [c for s in serves for c in _children(s)]
        stubs = [c for s in servers for c in _children(s)]
        assert serves and servers and stubs
        os.kill(make.pid, stop_signal)
        out_text, _ = make.communicate(timeout=90)   # until serve, the last writer, is gone
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert out_text.rstrip().endswith("tritonserver stopped"), out_text
    everything = serves + servers + stubs
    deadline = time.monotonic() + 10       # orphans are reaped by init, not by us
    while any(alive(p) for p in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in everything if alive(p)] == []
    assert shm_regions(*serves) == set()


def _children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:    # ppid
            found.append(int(stat.parent.name))
    return found


def running_on(registry: Path) -> list[int]:
    """Processes whose command line names `registry` (a tritonserver serving it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(registry).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_serving_env_with_numpy_2_is_refused():
    """numpy 2 in the stub's environment: models would load and answer empty arrays. The
    project's own .venv has numpy 2: as a serving environment it is refused up front."""
    import numpy

    from pipeline.serving.server import locate

    assert int(numpy.__version__.split(".")[0]) >= 2
    with pytest.raises(ServeError, match=f"numpy {numpy.__version__}; the python backend's stub "
                                         "needs numpy<2"):
        locate(Path(sys.prefix))
