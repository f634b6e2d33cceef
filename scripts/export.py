"""Stage 2, export: `python scripts/export.py [--model NAME]... [--out DIR] [--opset N]`."""
from pipeline.cli import export

if __name__ == "__main__":
    export(prog_name="scripts/export.py")
