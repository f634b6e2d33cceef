"""Scoring: run a verified artifact over a dataset (`python -m pipeline score`).

    dataset.py   Parquet / .npz input as Arrow batches, streamed
    rows.py      the per-row check: good rows laid out for the model, rejects with a reason
    grouping.py  exact-length groups from a bounded pool; one runner call per group
    output.py    the output and rejects Parquet (atomic), progress lines
    score.py     ScoreConfig, main(config): checks the options, opens the artifact, an engine
    local.py     the local engine: one process, a reader thread, one session
    ray_engine.py  the Ray Data engine: read_parquet, an actor pool, the driver writes
    bench.py     rows/s of score vs a per-sequence loop and eager PyTorch; Ray 1 vs 2 actors
    bench_e2e.py the whole `score` command vs a per-sequence loop, start-up included; profile

    >>> from pipeline.scoring import ScoreConfig, main
    >>> main(ScoreConfig("classifier", Path("seqs.parquet"), Path("scores.parquet")))
"""
from .score import ScoreConfig, main, summary_line

__all__ = ["ScoreConfig", "main", "summary_line"]
