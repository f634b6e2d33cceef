"""`python -m pipeline ...` runs the CLI (see pipeline.main)."""
from . import main

main(prog_name="python -m pipeline")
