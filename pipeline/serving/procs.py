"""The processes of one tritonserver run, read from /proc (Linux; no psutil needed).

    stubs(server.process.pid)       # {"forecaster_onnx": [pid, pid], ...}: its backend stubs
    rss(group_pids(server.process.pid))   # {pid: resident bytes} of the server and its stubs

tritonserver runs in its own session, so its pid is also the process group of every backend
stub it starts; that group, not a process name, is what `serve`, the watchdog, the soak's RSS
sampler and the tests look at (other tritonservers may run on the same machine).
A stub's command line is `triton_python_backend_stub <version folder>/<model file> <shm region>
... <instance name> <backend folder>`: its model is the folder above the version folder.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

STUB = "triton_python_backend_stub"


def stop_with_parent(signum: int) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies, even by SIGKILL
    (PR_SET_PDEATHSIG). Called in a child before exec, or by `serve --stop-with-parent`."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signum)   # 1 = PR_SET_PDEATHSIG (linux/prctl.h)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    """Running: not gone and not a zombie (a killed stub stays a zombie until reaped)."""
    found = _stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def group_pids(pgid: int, zombies: bool = False) -> list[int]:
    """Live processes of process group `pgid` (with `zombies`: and those not yet reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[2] == pgid and (zombies or stat[0] not in ("Z", "X")):
                found.append(int(entry.name))
    return sorted(found)


def stubs(server_pid: int) -> dict[str, list[int]]:
    """{Triton model: pids of its live backend stubs} among the children of `server_pid`."""
    found: dict[str, list[int]] = {}
    for pid in group_pids(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].decode(errors="replace").endswith(STUB):
            model = Path(argv[1].decode(errors="replace")).parent.parent.name
            found.setdefault(model, []).append(pid)
    return found


def rss(pids: list[int]) -> dict[int, int]:
    """{pid: resident set size in bytes} of those still running."""
    found = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[pid] = int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the running processes `pids` have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])     # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


_adopters = 0
_adopting = threading.Lock()


def adopt_orphans(on: bool) -> None:
    """While any server of this process runs (`on` counted, `off` uncounted), this process
    is the child subreaper (PR_SET_CHILD_SUBREAPER): stubs whose tritonserver died first
    become its children, so `reap_group` reaps them at once, instead of init in its own
    time (seconds here: `[triton_python_b] <defunct>` under PID 1 after a stop)."""
    import ctypes
    global _adopters
    with _adopting:
        _adopters += 1 if on else -1
        if _adopters == (1 if on else 0):
            ctypes.CDLL(None).prctl(36, int(on))   # 36 = PR_SET_CHILD_SUBREAPER


def reap_group(pgid: int, timeout: float = 10.0) -> list[int]:
    """Wait until no process of group `pgid` exists, zombies included: reap those that are
    this process's children (adopted orphans), wait for the rest to go. Returns what is
    still there after `timeout` s (nothing, unless a process will not die)."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in group_pids(pgid, zombies=True):
            found = _stat(pid)
            if found is not None and found[1] == os.getpid() and found[0] in ("Z", "X"):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:      # reaped meanwhile
                    pass
        left = group_pids(pgid, zombies=True)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


class Periodic:
    """A daemon thread calling `self.tick()` every `interval` seconds, the first time at once,
    until `stop()` (which waits for a tick under way). The watchdog and the RSS sampler."""
    interval = 1.0

    def start(self):
        self._stop = getattr(self, "_stop", None) or threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = getattr(self, "_stop", None) or threading.Event()
        self._stop.set()
        if getattr(self, "_thread", None) is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)

    def tick(self) -> None:
        raise NotImplementedError
