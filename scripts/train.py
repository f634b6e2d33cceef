"""Stage 1, train: `python scripts/train.py [--model NAME]... [--out DIR] [--epochs N] [--seed N]`."""
from pipeline.cli import train

if __name__ == "__main__":
    train(prog_name="scripts/train.py")
