"""SIGKILL a stage after its Nth rename, for crash tests (issue 25).

    >>> rc = run_killed("from pipeline.cli import cli; cli(['import', ...])", n=2)

The script runs in a fresh interpreter whose os.replace and os.rename (every atomic rename
the pipeline makes goes through one of them) kill the process with SIGKILL right after the
Nth call returns: the rename happened, nothing after it did, no cleanup ran. Returns the
exit status (-9 when the kill came, 0 when the script made fewer renames).
"""
import subprocess
import sys

PRELUDE = """
import os, signal
_count = [0]
def _wrap(real):
    def renamed(*args, **kwargs):
        result = real(*args, **kwargs)
        _count[0] += 1
        if _count[0] == {n}:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return renamed
os.replace, os.rename = _wrap(os.replace), _wrap(os.rename)
"""


def run_killed(script: str, n: int, cwd=None) -> int:
    done = subprocess.run([sys.executable, "-c", PRELUDE.format(n=n) + script], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    return done.returncode
