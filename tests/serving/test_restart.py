"""A server restarts like a service: stopped after serving clients, it starts again on the same
ports at once (their connections in TIME_WAIT do not make them "in use"), and a stop ends only
once its backend stubs are reaped (no `<defunct>` left for init)."""
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.serving.net import free_ports, http_json
from pipeline.serving.procs import stubs
from pipeline.specs import SPECS
from tests.serving.conftest import start, stop_and_check

TIME_WAIT = "06"      # the state column of /proc/net/tcp


def time_wait_sockets(port: int) -> int:
    """Connections in TIME_WAIT whose local port is `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == TIME_WAIT:
                count += 1
    return count


def ask(server, n: int) -> None:
    """`n` requests, one connection each (as curl or the watchdog's probes), all answered."""
    spec = SPECS["classifier"]
    x = np.zeros((1, 3, spec.input_size), np.float32)
    for runtime in ("onnx", "torchscript"):
        for _ in range(n):
            status, answer = http_json(server.urls["http"], f"/v2/models/classifier_{runtime}/infer", {
                "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                            "data": x.ravel().tolist()}]})
            assert status == 200 and answer["outputs"][0]["name"] == "output", answer


def test_stopped_server_restarts_on_the_same_ports_within_5_s(published, tmp_path):
    # only the two models `ask` uses: each model loaded is one more stub to start and reap
    registry = tmp_path / "registry"
    for model in ("classifier_onnx", "classifier_torchscript"):
        shutil.copytree(published["registry"] / model, registry / model)
    ports = free_ports("127.0.0.1", {"http": 0, "grpc": 0, "metrics": 0})
    kwargs = dict(public_key=published["keys"]["public"], http_port=ports["http"],
                  grpc_port=ports["grpc"], metrics_port=ports["metrics"])
    server = start(registry, **kwargs)
    try:
        ask(server, 10)
        running = [pid for pids in stubs(server.process.pid).values() for pid in pids]
        assert running
    finally:
        stop_and_check(server)        # no process of its group left, not even a zombie
    stopped = time.monotonic()
    assert [p for p in running if Path(f"/proc/{p}").exists()] == []    # every stub reaped
    # the case of the issue: the stopped server's connections hold its HTTP port in TIME_WAIT
    assert time_wait_sockets(ports["http"]) > 0
    assert time.monotonic() - stopped < 5      # restarted at once, as a supervisor would
    server = start(registry, **kwargs)
    try:
        assert server.urls["http"] == f"127.0.0.1:{ports['http']}"
        ask(server, 1)
    finally:
        stop_and_check(server)
