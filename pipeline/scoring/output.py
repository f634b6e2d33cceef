"""What `score` writes: the output Parquet and, with --bad-rows skip, the rejects beside it,
both atomically; and the progress it reports while it does.

    with ScoreWriter(Path("scores.parquet"), spec, id_type, skip=True) as out:
        out.write(ids, y)                      # (rows,) ids, (rows, outputs) float32
        out.reject(ids, reasons)               # --bad-rows skip only

Output columns: the id column as it came in, `output` list<float32> (the model's O values)
and, for a classification model, `label` int64 (argmax). Rejects: the id column and
`reason` (string). Both files are written to `.tmp-*` files beside their destinations and
renamed onto them only when the whole input has been scored (pipeline.fsio.atomic_paths):
an interrupted run, even by SIGKILL, leaves no file under the output's name; a killed run's
temp file (no Parquet footer, `.tmp-` name) is removed by the next `score` in that folder.
The pair is one unit: the previous output is removed first, then the rejects land, then the
output, so wherever a run is killed an output never sits beside another run's rejects (and
a run with --bad-rows fail removes an older run's rejects file).
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import InputError
from ..specs import ModelSpec

if TYPE_CHECKING:
    import pyarrow as pa


def rejects_path(output: Path) -> Path:
    """scores.parquet -> scores.rejects.parquet"""
    return Path(output).with_suffix(".rejects.parquet")


def output_schema(spec: ModelSpec, id_column: str, id_type) -> "pa.Schema":
    """id, output list<float32> (list<list<float32>> per step), and for a classifier label
    int64 (list<int64> per step)."""
    import pyarrow as pa
    per_step = len(spec.output.shape) == 3
    values, label = pa.list_(pa.float32()), pa.int64()
    if per_step:
        values, label = pa.list_(values), pa.list_(label)
    fields = [pa.field(id_column, id_type), pa.field("output", values)]
    if spec.task == "classification":
        fields.append(pa.field("label", label))
    return pa.schema(fields)


def output_table(spec: ModelSpec, schema: "pa.Schema", ids: "pa.Array",
                 y: np.ndarray) -> "pa.Table":
    """(rows,) ids and (rows, O) outputs (or (rows, length, O) per step) as a table of the
    output schema."""
    import pyarrow as pa

    from .rows import arrow

    def lists(values: np.ndarray, width: int):       # consecutive runs of `width` values
        offsets = arrow(np.arange(0, len(values) + 1, width, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values)

    rows, width = y.shape[0], y.shape[-1]
    steps = y.shape[1] if y.ndim == 3 else 1
    out = lists(arrow(y.reshape(-1).astype(np.float32)), width)        # (rows * steps)
    columns = [cast_ids(ids, schema.field(0).type, schema.field(0).name),
               lists(out, steps) if y.ndim == 3 else out]
    if spec.task == "classification":
        label = arrow(y.argmax(axis=-1).reshape(-1).astype(np.int64))
        columns.append(lists(label, steps) if y.ndim == 3 else label)
    return pa.Table.from_arrays(columns, schema=schema)


def cast_ids(ids: "pa.Array", id_type, name: str) -> "pa.Array":
    """Ids of a later file in the first file's type (int32 -> int64 ...), or one line why not."""
    if ids.type == id_type:
        return ids
    try:
        return ids.cast(id_type)
    except (ValueError, TypeError, NotImplementedError) as exc:   # ArrowInvalid: ValueError
        raise InputError(f"id column {name!r} is {ids.type} here and {id_type} in the first "
                         f"file; cannot write both ({exc})") from None


# Output rows (and, per step, values) gathered before one write_table: each call is a row
# group, and a group of the pool is ~50-300 rows; written one by one, 100k rows made ~1,400
# row groups and write_table took ~15% of the run (measured, issue 23).
WRITE_ROWS = 65536
WRITE_VALUES = 1 << 23          # 32 MB of float32 outputs (a per-step model's are large)


class ScoreWriter:
    """The output (and rejects) Parquet writers over temp files; renamed in on clean exit."""

    def __init__(self, output: Path, spec: ModelSpec, id_column: str, id_type, skip: bool):
        import pyarrow as pa
        self.output, self.spec, self.skip = Path(output), spec, skip
        self.schema = output_schema(spec, id_column, id_type)
        self.reject_schema = pa.schema([pa.field(id_column, id_type),
                                        pa.field("reason", pa.string())])
        self.rows = self.rejected = 0
        self._pending, self._pending_rows, self._pending_values = [], 0, 0

    def __enter__(self):
        import pyarrow.parquet as pq

        from ..fsio import atomic_paths, sweep_stale_temps
        sweep_stale_temps(self.output.parent)            # a killed run's temp files
        # One unit: the old output goes first and the new one lands last, after its rejects
        # (or, with --bad-rows fail, after the old rejects are gone): a kill at any point
        # leaves no output beside another run's rejects.
        rejects = rejects_path(self.output)
        dests = ([rejects] if self.skip else []) + [self.output]
        self._stack = contextlib.ExitStack()
        tmps = self._stack.enter_context(atomic_paths(*dests, clear=(self.output, rejects)))
        self._out = self._stack.enter_context(pq.ParquetWriter(tmps[-1], self.schema))
        self._rej = self._stack.enter_context(
            pq.ParquetWriter(tmps[0], self.reject_schema)) if self.skip else None
        return self

    def __exit__(self, *exc_info):
        # writers close (footers written) before atomic_paths renames, or on error removes
        try:
            if exc_info[0] is None:
                self._flush()
        except BaseException:
            if not self._stack.__exit__(*sys.exc_info()):
                raise
            return False
        return self._stack.__exit__(*exc_info)

    def write(self, ids: "pa.Array", y: np.ndarray) -> None:
        """Rows scored: (rows,) ids, (rows, O) or (rows, length, O) outputs. Held until
        WRITE_ROWS rows or WRITE_VALUES values are waiting, then one row group."""
        if len(ids):
            # (ids, y) kept as they are and turned into one table per row group: a table
            # per model call cost ~50 µs each (~0.07 s of 100k rows in ~1,400 calls)
            self._pending.append((ids, y))
            self.rows += len(ids)
            self._pending_rows += len(ids)
            self._pending_values += y.size
            if self._pending_rows >= WRITE_ROWS or self._pending_values >= WRITE_VALUES:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        if self._pending:
            ids, ys = zip(*self._pending)
            if all(y.ndim == 2 for y in ys):       # (rows, O) each: one table for them all
                table = output_table(self.spec, self.schema, pa.concat_arrays(
                    [cast_ids(i, self.schema.field(0).type, self.schema.field(0).name)
                     for i in ids]), np.concatenate(ys))
            else:                                  # per step: (rows, length, O), lengths vary
                table = pa.concat_tables([output_table(self.spec, self.schema, i, y)
                                          for i, y in self._pending])
            self._out.write_table(table, row_group_size=max(self._pending_rows, 1))
        self._pending, self._pending_rows, self._pending_values = [], 0, 0

    def write_table(self, table: "pa.Table") -> None:
        """Rows already in the output schema (the Ray engine's)."""
        if table.num_rows:
            self._flush()
            self._out.write_table(table.cast(self.schema))
            self.rows += table.num_rows

    def reject(self, ids: "pa.Array", reasons: list[str]) -> None:
        """Record rejected rows; with --bad-rows fail, the first one ends the run."""
        import pyarrow as pa
        if not len(ids):
            return
        if not self.skip:
            raise InputError(f"row with {self.schema.field(0).name} {ids[0].as_py()!r}: "
                             f"{reasons[0]} (--bad-rows skip writes such rows to "
                             f"{rejects_path(self.output).name} and goes on)")
        ids = cast_ids(ids, self.reject_schema.field(0).type, self.reject_schema.field(0).name)
        self._rej.write_table(pa.Table.from_arrays([ids, pa.array(reasons, pa.string())],
                                                   schema=self.reject_schema))
        self.rejected += len(ids)


class Progress:
    """Rows and rows/s: a tqdm bar on a terminal, a plain line every `every_s` in a log
    (a bar's carriage-return updates would fill a log file with thousands of them)."""

    def __init__(self, total: int, log: Callable[[str], None], stream=None,
                 every_s: float = 10.0, enabled: bool = True):
        stream = stream or sys.stderr
        self.total, self.log, self.every_s, self.done = total, log, every_s, 0
        self.start = self.last = time.perf_counter()
        self.bar = None
        if enabled and stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="rows", unit_scale=True, file=stream,
                            dynamic_ncols=True, smoothing=0.1)
        self.enabled = enabled

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
            self.log(f"score: {self.done:,} / {self.total:,} rows{share}, {rate:,.0f} rows/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
