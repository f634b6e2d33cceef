"""Stage 4, bench: `python scripts/bench.py [--model NAME]... [--out DIR] [--threads N] [--shapes BxS,...]`."""
from pipeline.cli import bench

if __name__ == "__main__":
    bench(prog_name="scripts/bench.py")
