"""Ids that cannot be joined back: repeated ones, found before any row is scored.

    >>> repeated = repeated_ids(data)            # a scoring.dataset.Dataset
    >>> check_batch(batch, spec, repeated=repeated)   # such rows: "duplicate id"

The output is written in length order, not input order, so a row's id is the only way back
to its input row: an id that appears twice makes two answers that cannot be told apart.
Every row holding a repeated id is therefore bad, all of its occurrences, not all but the
first (which one came "first" would be the engine's order, not the user's). Null ids are
bad rows too (rows.py, "null id").

What it costs: one pass over the id column alone (Parquet reads that column only), and the
ids held once, as Arrow arrays (8 bytes a row for integer ids), while they are counted.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, first_line
from .rows import arrow

if TYPE_CHECKING:
    import pyarrow as pa

    from .dataset import Dataset


def repeated_ids(data: "Dataset", spec) -> "pa.Array":
    """The distinct non-null ids that appear more than once across every input file."""
    import pyarrow as pa

    if data.row_ids:                    # row numbers as ids (no id column): none repeats
        return pa.array([], data.id_type)
    chunks = []
    for path in data.files:
        if path.suffix == ".npz":
            chunks += [b.column(0) for b in data.batches(1 << 16, spec)]
            continue
        import pyarrow.parquet as pq
        try:
            column = pq.ParquetFile(path).read(columns=[data.id_column]).column(0)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({first_line(exc)})") from None
        chunks += column.chunks
    if not chunks:
        return pa.array([], data.id_type)
    try:
        ids = pa.chunked_array([c if c.type == data.id_type else c.cast(data.id_type)
                                for c in chunks], data.id_type)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise InputError(f"id column {data.id_column!r}: files hold ids of different types "
                         f"({first_line(exc)})") from None
    if pa.types.is_integer(data.id_type):      # numpy: pyarrow.compute not imported
        return _repeated_integers(ids.chunks, data.id_type)
    import pyarrow.compute as pc
    counts = pc.value_counts(ids.drop_null())           # struct<values, counts>
    if not len(counts):
        return pa.array([], data.id_type)
    # read from the buffer: pc.greater(..., 1) (a Python scalar) and to_numpy() each make
    # pyarrow import pandas, ~0.6 s of a 20k-row run
    n = counts.field("counts")                          # int64, no nulls
    many = np.flatnonzero(np.frombuffer(n.buffers()[1], np.int64, len(n), n.offset * 8) > 1)
    return counts.field("values").take(arrow(many))


def _repeated_integers(chunks: list, id_type) -> "pa.Array":
    """The distinct non-null integer ids found more than once: sort, compare neighbours."""
    import pyarrow as pa
    values = []
    for chunk in chunks:                               # (n,) ids of one chunk
        view = np.frombuffer(chunk.buffers()[1], np.dtype(id_type.to_pandas_dtype()),
                             len(chunk), chunk.offset * id_type.bit_width // 8)
        if chunk.null_count:       # validity bitmap, least significant bit first
            valid = np.unpackbits(np.frombuffer(chunk.buffers()[0], np.uint8),
                                  bitorder="little")[chunk.offset:chunk.offset + len(chunk)]
            view = view[valid.astype(bool)]
        values.append(view)
    ids = np.sort(np.concatenate(values)) if values else np.zeros(0)
    many = ids[1:][ids[1:] == ids[:-1]]                 # sorted, a k-times id k-1 times
    # distinct by hand: np.unique imports numpy.ma (~5-10 ms of score's start, issue 23)
    many = many[np.concatenate([[True], many[1:] != many[:-1]])] if len(many) else many
    return pa.Array.from_buffers(id_type, len(many), [None, pa.py_buffer(many)])


def refuse_repeated(repeated: "pa.Array", id_column: str) -> None:
    """--bad-rows fail: one line naming a repeated id, before any row is scored."""
    if len(repeated):
        more = f" (and {len(repeated) - 1} more repeated ids)" if len(repeated) > 1 else ""
        raise InputError(f"id column {id_column!r}: id {repeated[0].as_py()!r} appears more "
                         f"than once{more}; ids must be unique to join the output back "
                         "(--bad-rows skip rejects every such row as 'duplicate id')")
