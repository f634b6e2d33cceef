"""Stage 2, export: `python scripts/export.py [--model NAME]... [--out DIR] [--opset N]`."""
from pipeline import reproducible_export
from pipeline.cli import export

if __name__ == "__main__":
    reproducible_export()       # the same weights export the same bytes (see there)
    export(prog_name="scripts/export.py")
