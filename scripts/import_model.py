"""Stage 1 for your own model: `python scripts/import_model.py NAME --weights FILE --task T`."""
from pipeline.cli import import_model

if __name__ == "__main__":
    import_model(prog_name="scripts/import_model.py")
