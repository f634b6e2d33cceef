"""The local engine: one process, one model session, the input streamed batch by batch.

    score_local(config, artifact, log)       # via pipeline.scoring.score.main

A reader thread decodes the next Parquet batch and checks its rows while the main thread
runs the model (pyarrow, numpy and ONNX Runtime release the GIL), at most READ_AHEAD
batches ahead, so memory stays bounded: the pool's `--batch-size` rows plus a few read
batches, whatever the file's size. Rejects are recorded in input order as each batch is
checked, so with --bad-rows fail the first bad row of the input ends the run.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .dataset import open_dataset
from .rows import Checked, check_batch
from .grouping import LengthPool, run_group, step_width
from .ids import refuse_repeated, repeated_ids
from .output import Progress, ScoreWriter, cast_ids, rejects_path
from .score import Artifact, ScoreConfig, open_runner

READ_ROWS = 8192       # rows per decoded batch (a Parquet row group is read in such slices)
READ_AHEAD = 2         # checked batches waiting for the model, at most


def score_local(config: ScoreConfig, artifact: Artifact, log: Callable[[str], None]) -> dict:
    runner = open_runner(artifact, config.threads)          # manifest checked, then loaded
    spec = runner.spec
    data = open_dataset(config.input, spec, config.id_column, config.sequence_column)
    pool = LengthPool(step_width(spec), config.batch_rows)
    progress = Progress(data.rows, log, enabled=config.progress)
    start = time.perf_counter()
    skip = config.bad_rows == "skip"
    repeated = repeated_ids(data, spec)
    if not skip:
        refuse_repeated(repeated, config.id_column)   # before anything is scored
    batches = _checked(data, spec, config, repeated)
    try:
        with ScoreWriter(config.output, spec, config.id_column, data.id_type, skip) as out:
            for checked in batches:
                # every file's ids in the first one's type, before they meet in the pool
                checked.ids = cast_ids(checked.ids, data.id_type, config.id_column)
                out.reject(checked.bad_ids, checked.bad_reasons)   # fail: raises here
                progress.update(len(checked.bad_ids))
                for group in pool.add(checked):
                    out.write(group.ids, run_group(runner, group))
                    progress.update(len(group.ids))
            for group in pool.drain():
                out.write(group.ids, run_group(runner, group))
                progress.update(len(group.ids))
    finally:
        batches.close()                                    # stops the reader thread now
        progress.close()
    seconds = time.perf_counter() - start
    return {"model": spec.name, "runtime": runner.name, "engine": "local", "rows": out.rows,
            "rejected": out.rejected, "seconds": seconds,
            "rows_per_s": (out.rows + out.rejected) / max(seconds, 1e-9),
            "output": Path(config.output),
            "rejects": rejects_path(config.output) if skip else None, "row_ids": data.row_ids}


def _checked(data, spec, config: ScoreConfig, repeated) -> Iterator[Checked]:
    rows = min(READ_ROWS, config.batch_rows)
    source = (check_batch(b, spec, config.id_column, config.sequence_column, repeated)
              for b in data.batches(rows, spec))
    return _read_ahead(source) if config.prefetch else source


def _read_ahead(source: Iterator[Checked]) -> Iterator[Checked]:
    """`source` run on a thread, READ_AHEAD items ahead; its exceptions re-raised here."""
    items: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:           # handed to the consumer, raised there
            items.put(exc)

    thread = threading.Thread(target=produce, name="score-reader", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()                               # the consumer stopped: let the thread end
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(0.05)
