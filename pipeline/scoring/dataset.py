"""What `score` reads: Parquet files (or a folder of them) or an .npz, as Arrow record
batches, and the per-row check that splits each batch into good rows and rejects.

    >>> data = open_dataset(Path("seqs.parquet"), spec)          # id, sequence columns
    >>> for batch in data.batches(8192, spec):                    # streamed, never the file
    ...     checked = check_batch(batch, spec)                    # rows.py: good / rejects

Parquet: the sequence column (default `sequence`) is list<list<float>> or
list<fixed_size_list<float, F>> (steps x features; large_list too; float64 converted),
read row group by row group, so memory follows the batch, not the file. The id column
(default `id`) is passed through as it is, any type; other columns are never read. Without
an `id` column (in every file) the row number is the id, counted from 0 across the files
in order, as for an .npz without `id` (`Dataset.row_ids`; score's summary line says so);
a column named otherwise (`--id-column`) must be there: a missing one is likely a typo.
.npz: `input` (batch, seq, F) padded, `lengths` (batch,) and optionally `id` (a token
model: `input` (batch, seq) int ids, `lengths` optional, row by row as list<int64>); it is
loaded whole (an .npz cannot be streamed) and cut into batches of the same Arrow form
(each row trimmed to its length), so both inputs take one path from here on.

File-level problems (no such column, unreadable file, an .npz that breaks its layout) are
InputErrors: they say nothing about one row. Rows are checked in rows.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..bounded import check_npz, check_parquet
from ..errors import InputError, first_line
from ..contract import check_lengths
from ..predict import ZIP_MAGIC, _reading
from ..specs import ModelSpec
from .rows import arrow

if TYPE_CHECKING:       # pyarrow is imported where a batch is made or read
    import pyarrow as pa

SUFFIXES = (".parquet", ".npz")
DEFAULT_ID = "id"        # without a column of this name, row numbers are the ids


@dataclass(frozen=True)
class Dataset:
    files: tuple[Path, ...]
    id_column: str
    sequence_column: str
    id_type: "pa.DataType"      # of the first file: every output row's id has this type
    rows: int                   # total rows (Parquet metadata, or the .npz's batch)
    row_ids: bool = False       # the input has no id column: ids are row numbers (int64)

    def batches(self, batch_rows: int, spec: ModelSpec) -> Iterator["pa.RecordBatch"]:
        """Record batches of at most `batch_rows` rows with the id and sequence columns."""
        first = 0                   # row number of the file's first row (row_ids)
        for path in self.files:
            if path.suffix == ".npz":
                yield from _npz_batches(path, spec, self, batch_rows)
            else:
                for batch in _parquet_batches(path, self, batch_rows):
                    if self.row_ids:
                        batch = _numbered(batch, first, self)
                    first += batch.num_rows
                    yield batch


def input_files(path: Path) -> tuple[Path, ...]:
    """`path` itself (.parquet or .npz), or the .parquet files in folder `path`, sorted."""
    path = Path(path)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix == ".parquet"
                             and p.is_file() and not p.name.startswith((".", "_"))))
        if not files:
            raise InputError(f"{path}: folder holds no .parquet file")
        return files
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; give a "
                         ".parquet file, a folder of them, or an .npz")
    return (path,)


def open_dataset(path: Path, spec: ModelSpec, id_column: str = DEFAULT_ID,
                 sequence_column: str = "sequence") -> Dataset:
    """Find the input files and check that the first one has the two columns."""
    files = input_files(path)
    if files[0].suffix.lower() == ".npz":
        with _npz(files[0]) as archive:
            x, _, ids = _npz_arrays(files[0], archive, spec, load=False)
        import pyarrow as pa
        id_type = pa.array(ids[:0]).type if ids is not None else pa.int64()
        return Dataset(files, id_column, sequence_column, id_type, int(x.shape[0]),
                       row_ids=ids is None)
    import pyarrow as pa
    total, id_type, row_ids = 0, None, None
    for file in files:
        schema, rows = _parquet_schema(file, id_column, sequence_column, row_ids)
        total += rows
        if row_ids is None:         # the first file decides: ids in every file, or in none
            row_ids = id_column not in schema.names
            if row_ids and id_column != DEFAULT_ID:
                raise InputError(f"{file}: has no column {id_column!r}; columns: "
                                 f"{', '.join(schema.names)} (see --id-column)")
            id_type = pa.int64() if row_ids else schema.field(id_column).type
    return Dataset(files, id_column, sequence_column, id_type, total, row_ids=row_ids)


def _parquet_schema(file: Path, id_column: str, sequence_column: str, row_ids: bool | None):
    """(Arrow schema, rows) of a Parquet file with the sequence column, and the id column
    unless `row_ids` (None: the first file, which may go either way)."""
    import pyarrow.parquet as pq
    try:
        meta = pq.ParquetFile(file)
        schema, rows = meta.schema_arrow, meta.metadata.num_rows
    except (OSError, ValueError) as exc:            # ArrowInvalid is a ValueError
        raise InputError(f"{file}: not a readable Parquet file ({first_line(exc)})") from None
    check_parquet(file, meta.metadata)              # declared sizes, before any row group
    if sequence_column not in schema.names:
        raise InputError(f"{file}: has no column {sequence_column!r}; columns: "
                         f"{', '.join(schema.names)} (see --sequence-column)")
    if row_ids is not None and row_ids == (id_column in schema.names):
        raise InputError(f"{file}: {'has' if row_ids else 'has no'} column {id_column!r}, "
                         f"unlike the first file; give every file an id column, or none "
                         f"(row numbers are the ids then)")
    return schema, rows


def _numbered(batch: "pa.RecordBatch", first: int, data: Dataset) -> "pa.RecordBatch":
    """`batch` (the sequence column only) with row numbers from `first` as its ids."""
    import pyarrow as pa
    ids = pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64))
    return pa.RecordBatch.from_arrays([ids, batch.column(data.sequence_column)],
                                      names=[data.id_column, data.sequence_column])


def _parquet_batches(file: Path, data: Dataset, batch_rows: int):
    import pyarrow.parquet as pq
    _parquet_schema(file, data.id_column, data.sequence_column, data.row_ids)
    columns = [data.sequence_column] if data.row_ids else [data.id_column, data.sequence_column]
    try:
        # use_threads=False: one decoding thread; Arrow's pool only contended with the model
        # on this 2-core machine (measured slower). The reader thread overlaps decoding.
        # pre_buffer=False: with it, the reader kept every column chunk it had read
        # (peak RSS 0.28 -> 0.81 GB from 20k to 200k rows; without, 0.29 and 0.34 GB).
        for batch in pq.ParquetFile(file, pre_buffer=False).iter_batches(
                batch_size=batch_rows, columns=columns, use_threads=False):
            yield batch
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: unreadable ({first_line(exc)})") from None


class _npz:
    """np.load of an .npz with predict's one-line errors; pickles never loaded."""
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        with _reading(self.path):
            with open(self.path, "rb") as f:
                if not f.read(len(ZIP_MAGIC)).startswith(ZIP_MAGIC):
                    raise InputError(f"{self.path}: not a .npz file (it does not start like one)")
            check_npz(self.path)            # declared shapes, before numpy allocates them
            self.archive = np.load(self.path, allow_pickle=False)
        return self.archive

    def __exit__(self, *exc):
        self.archive.close()


def _npz_arrays(path: Path, archive, spec: ModelSpec, load: bool = True):
    """(input (batch, seq, F) or token ids (batch, seq), lengths (batch,), ids or None),
    after the layout checks; with load=False only as much as the checks need. A token
    model's `lengths` is optional (every row full); its ids are checked per row (tokens.py)."""
    names, tokens = set(archive.files), spec.input_kind == "tokens"
    if not {"input", *(() if tokens else ("lengths",))} <= names or \
            names - {"input", "lengths", "id"}:
        raise InputError(f"{path}: holds arrays {sorted(names)}; give 'input' " + (
            "(batch, seq) int token ids, optionally 'lengths' (batch,)" if tokens else
            "(batch, seq, features), 'lengths' (batch,)") + " and optionally 'id' (batch,)")
    with _reading(path):
        x = archive["input"]
        lengths = archive["lengths"] if "lengths" in names else None
        ids = archive["id"] if "id" in names else None
    if tokens and (x.ndim != 2 or x.dtype.kind not in "iu"):
        raise InputError(f"{path}: input is {x.dtype} {x.shape}; model {spec.name} takes "
                         "integer token ids (batch, seq)")
    elif not tokens and (x.ndim != 3 or x.shape[2] != spec.input_size):
        raise InputError(f"{path}: input has shape {x.shape}; model {spec.name} takes (batch, "
                         f"seq, {spec.input_size})")
    if not tokens and x.dtype.newbyteorder("=") not in (np.dtype(np.float32),
                                                        np.dtype(np.float64)):
        raise InputError(f"{path}: input dtype {x.dtype}; give float32 (float64 is converted)")
    batch, seq = x.shape[:2]
    lengths = np.full(batch, seq, np.int64) if lengths is None else lengths   # ids: all full
    # 0 is an empty row (rejected as such); beyond seq the padded array cannot hold it
    lengths = check_lengths(lengths, batch, seq, str(path), low=0)
    if ids is not None and (ids.ndim != 1 or ids.shape[0] != batch or ids.dtype.kind == "O"):
        raise InputError(f"{path}: id is {ids.dtype} {ids.shape}; give one number or string "
                         f"per input row: shape ({batch},)")
    return x, lengths, ids


def _npz_batches(path: Path, spec: ModelSpec, data: Dataset, batch_rows: int):
    """The .npz as record batches of the Parquet form: list<fixed_size_list<float, F>>, or
    list<int64> token ids."""
    import pyarrow as pa
    with _npz(path) as archive:
        x, lengths, ids = _npz_arrays(path, archive, spec)
    ids = arrow(ids) if ids is not None and ids.dtype.kind in "iuf" else \
        pa.array(ids) if ids is not None else arrow(np.arange(len(lengths)))
    features = spec.input_size
    for lo in range(0, len(lengths), batch_rows):
        n = lengths[lo:lo + batch_rows]                                 # (rows,)
        steps = np.concatenate([x[lo + i, :k] for i, k in enumerate(n)]) if n.sum() else \
            x[:0, 0]                                              # (sum(n), F) or (sum(n),)
        inner = arrow(steps.astype(np.int64)) if spec.input_kind == "tokens" else \
            pa.FixedSizeListArray.from_arrays(arrow(steps.reshape(-1)), features)
        offsets = arrow(np.concatenate([[0], np.cumsum(n)]).astype(np.int32))
        sequences = pa.ListArray.from_arrays(offsets, inner)
        yield pa.RecordBatch.from_arrays([ids[lo:lo + len(n)], sequences],
                                         names=[data.id_column, data.sequence_column])


def sequences_table(sequences: list[np.ndarray], ids=None, id_column: str = "id",
                    sequence_column: str = "sequence", fixed: bool = True) -> "pa.Table":
    """Ragged (steps, F) arrays as a table in score's input form (tests, bench, users):
    list<fixed_size_list<float32, F>>, or list<list<float32>> with fixed=False."""
    import pyarrow as pa
    features = sequences[0].shape[1] if sequences else 1
    steps = np.concatenate([np.asarray(s, np.float32).reshape(-1, features)
                            for s in sequences]) if sequences else np.zeros((0, features),
                                                                            np.float32)
    flat = pa.array(steps.reshape(-1))
    inner = pa.FixedSizeListArray.from_arrays(flat, features) if fixed else \
        pa.ListArray.from_arrays(pa.array(np.arange(0, steps.size + 1, features,
                                                    dtype=np.int32)), flat)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int32)
    ids = pa.array(np.arange(len(sequences)) if ids is None else ids)
    return pa.table({id_column: ids,
                     sequence_column: pa.ListArray.from_arrays(pa.array(offsets), inner)})
