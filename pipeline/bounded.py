"""Input files' declared sizes checked before anything is allocated for them.

    >>> check_npy(Path("x.npy")); check_npz(Path("x.npz"))     # InputError, one line
    >>> check_parquet(Path("x.parquet"), pq.ParquetFile(path).metadata)

numpy allocates an array from its header's shape before reading a byte of data: an .npy of
a few hundred bytes whose header says (100000, 100000, 5) asks for 186 GiB and fails with a
traceback (or, under the limit of free memory, takes it). So each header is read alone
(numpy's own header readers), and refused in one line when the data it declares is larger
than what the file (or the .npz member) holds, or larger than MAX_ARRAY_BYTES. A Parquet
footer likewise declares each column chunk's size: a compressed size beyond the file, or an
uncompressed one beyond MAX_ARRAY_BYTES, is refused before a row group is decoded.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputError, first_line

MAX_ARRAY_BYTES = 4 << 30       # 4 GiB: one array (or column chunk) of an input file, at most


def _declared(fp, where: str, available: int) -> None:
    """Read an .npy header from `fp`; refuse it if its data would not fit `available`."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise InputError(f"{where}: .npy format version {version} is not read; save it "
                             "with numpy.save")
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{where}: unreadable .npy header ({first_line(exc)})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: holds pickled Python objects; only numeric arrays are "
                         "loaded")
    need = math.prod(shape) * dtype.itemsize
    left = available - fp.tell()
    if need > left or need > MAX_ARRAY_BYTES:
        what = (f"more than the {left:,} bytes the file holds (unreadable: truncated, or "
                f"a lying header)" if need > left else
                f"more than the limit of {MAX_ARRAY_BYTES >> 30} GiB an input array may take")
        raise InputError(f"{where}: header declares shape {shape} {dtype} ({need:,} bytes), "
                         f"{what}; refused before allocating")


def check_npy(path: Path) -> None:
    with open(path, "rb") as fp:
        _declared(fp, str(path), Path(path).stat().st_size)


def check_npz(path: Path) -> None:
    """Every .npy member's header against its own (uncompressed) size and the limit."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                where = f"{path}: array {info.filename.removesuffix('.npy')!r}"
                if info.file_size > MAX_ARRAY_BYTES + (1 << 20):
                    raise InputError(f"{where}: {info.file_size:,} bytes uncompressed, more "
                                     f"than the limit of {MAX_ARRAY_BYTES >> 30} GiB")
                if info.filename.endswith(".npy"):
                    with archive.open(info) as fp:
                        _declared(fp, where, info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({first_line(exc)})") from None


def check_parquet(path: Path, metadata) -> None:
    """Each column chunk's declared sizes against the file's size and the limit."""
    size = Path(path).stat().st_size
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.total_compressed_size > size or \
                    chunk.total_uncompressed_size > MAX_ARRAY_BYTES:
                raise InputError(
                    f"{path}: row group {g}, column {chunk.path_in_schema!r} declares "
                    f"{chunk.total_compressed_size:,} bytes stored and "
                    f"{chunk.total_uncompressed_size:,} decoded; the file holds {size:,} and "
                    f"a column chunk may take {MAX_ARRAY_BYTES >> 30} GiB; refused before "
                    "reading")
