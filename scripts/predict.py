"""Predict: `python scripts/predict.py --model NAME --input FILE [--runtime R] [--output FILE]`."""
from pipeline.cli import predict

if __name__ == "__main__":
    predict(prog_name="scripts/predict.py")
