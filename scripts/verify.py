"""Stage 3, verify: `python scripts/verify.py [--model NAME]... [--out DIR] [--device D] [--shapes SPEC]`."""
from pipeline.cli import verify

if __name__ == "__main__":
    verify(prog_name="scripts/verify.py")
