"""`python -m pipeline ...` runs the CLI."""
import os
import sys

if sys.argv[1:2] == ["score"]:
    # numpy's OpenBLAS starts a thread per core at import (~0.03 s CPU, 5% of a 20k-row
    # run, measured for issue 23); score's numpy work has no BLAS call (ORT or torch run
    # the model with their own threads), so one is enough unless the user says otherwise.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cli import cli  # noqa: E402  (after the environment above: it imports numpy)

cli(prog_name="python -m pipeline")
