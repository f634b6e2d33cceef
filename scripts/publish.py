"""Stage 4, publish: `python scripts/publish.py [--model NAME]... [--out DIR] [--registry DIR] [--version N]`."""
from pipeline.cli import publish

if __name__ == "__main__":
    publish(prog_name="scripts/publish.py")
