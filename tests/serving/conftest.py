"""Serving fixtures: a published repository and a running tritonserver, always stopped.

The server is module-scoped (it starts in ~3-5 s); its teardown checks that nothing is left:
no process of its group, no /dev/shm region of its prefix. A failed test prints the server
log (pytest shows it under the failure).
"""
import shutil
from pathlib import Path

import pytest

from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish_main
from pipeline.serving.server import ServeConfig, TritonServer
from pipeline.specs import MODEL_NAMES
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify_main


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def leftovers(server: TritonServer, pid: int) -> list[str]:
    """What a stopped server left behind: processes of its group (a stop ends once its stubs
    are reaped, so not even a zombie), shm regions, files."""
    from pipeline.serving.procs import group_pids

    left = [f"process {p}" for p in group_pids(pid, zombies=True)]
    left += [str(r) for r in Path("/dev/shm").glob(server.shm_prefix + "*")]
    return left


def start(registry: Path, **kwargs) -> TritonServer:
    server = TritonServer(ServeConfig(registry, **kwargs))
    server.start()
    return server


def stop_and_check(server: TritonServer) -> None:
    pid = server.process.pid
    workspace = server.workspace
    server.stop()
    assert leftovers(server, pid) == []
    assert not workspace.exists()


@pytest.fixture(scope="session")
def published(exported, tmp_path_factory):
    """{"out": a verified copy of the exported root, "registry": both models published there
    (stateless and stream Triton models), signed with "keys" (keygen's {"private", "public"})}."""
    from pipeline.publishing.signing import keygen

    out = tmp_path_factory.mktemp("serve-out")
    registry, keys = out / "registry", keygen(out / "keys")
    for name in MODEL_NAMES:
        shutil.copytree(exported["out"] / name, out / name, ignore=shutil.ignore_patterns(".lock"))
        verify_main(VerifyConfig(name, out, device="cpu"), log=lambda s: None)
        publish_main(PublishConfig(name, out, registry, signing_key=keys["private"]),
                     log=lambda s: None)
    return {"out": out, "registry": registry, "keys": keys}


@pytest.fixture(scope="module")
def server(published):
    """Serving only versions signed by the publisher's key."""
    server = start(published["registry"], public_key=published["keys"]["public"])
    yield server
    stop_and_check(server)


@pytest.fixture(autouse=True)
def show_server_log_on_failure(request):
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "server" in request.fixturenames:
        server = request.getfixturevalue("server")
        print("---- tritonserver log ----\n" + server.log_text()[-20000:])
