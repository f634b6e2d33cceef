"""Crash-safe file writing, hashing and per-model locking.

Every artifact is written to a temporary file in its destination folder, flushed to disk,
then renamed over the destination (`os.replace` is atomic on POSIX): an interrupted run
leaves either the old file or the new one, never half of one, and removes its temp file.

    >>> with atomic_path("exported/forecaster/model.onnx") as tmp:
    ...     onnx.save(model, tmp)       # libraries that want a path write to tmp
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"   # temp files start with this, so leftovers are easy to spot


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success fsync it and rename it onto `dest`."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(dest: str | os.PathLike, obj) -> None:
    atomic_write_bytes(dest, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse fsync on a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and parents) or raise OSError saying why it can't be an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(path))
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "directory is not writable", str(path))
    return path


@contextlib.contextmanager
def model_lock(model_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on one model's folder, so two runs of a stage take turns.

    Atomic renames already keep every file whole; the lock keeps a set of files (weights,
    config, artifacts, manifest) from mixing two runs. The lock file itself is never
    removed: deleting it while another process waits would let a third one in.
    """
    folder = ensure_dir(model_dir)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
