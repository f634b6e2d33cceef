"""RNN pipeline: train the seed RNN models, export them to TorchScript and ONNX with dynamic
batch and sequence axes, verify the artifacts across runtimes, benchmark and publish them.

Stages talk only through files under `exported/<model>/`; see README.md.
`main` is the command line's entry (`python -m pipeline`, the `rnn-pipeline` script).
"""

import os
import sys


def reproducible_export() -> None:
    """Re-run this process (same pid, same arguments) with PYTHONHASHSEED=0 unless a seed
    is set. TorchScript writes a module's constants (a Linear's in/out features) in the
    order of a Python set of their names, which string hashing shuffles per process, so
    the same weights exported twice gave two model.pt: a new build to verify and publish
    for nothing. Call it first thing in an entry point that exports, never in-process
    (a test's CliRunner): it replaces the running program."""
    if "PYTHONHASHSEED" not in os.environ:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "PYTHONHASHSEED": "0"})


def main(prog_name: str | None = None) -> None:
    """Set up the process for the command about to run, then run the CLI."""
    command = sys.argv[1:2]
    if command == ["score"]:
        # numpy's OpenBLAS starts a thread per core at import (~0.03 s CPU, 5% of a 20k-row
        # run, measured for issue 23); score's numpy work has no BLAS call (ORT or torch
        # run the model with their own threads), so one is enough unless the user says so.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if command == ["export"]:
        reproducible_export()   # the same weights export the same bytes
    from .cli import cli        # after the environment above: it imports numpy
    cli(prog_name=prog_name)
