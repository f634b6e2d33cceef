"""Crash-safe file writing, hashing and per-model locking.

Every artifact is written to a temporary file in its destination folder, flushed to disk,
then renamed over the destination (`os.replace` is atomic on POSIX): an interrupted run
leaves either the old file or the new one, never half of one, and removes its temp file.
`atomic_paths` does this for a set of files that belong together (weights + config;
model.pt + model.onnx + manifest.json): every file is written and flushed before the first
rename, so a full disk (ENOSPC at write or at fsync) replaces nothing.

What a crash leaves behind: an exception or Ctrl-C removes the temp files; SIGKILL or a
power cut cannot, so a `.tmp-<name>.<pid>.<random>` file may stay beside the artifacts it
did not replace. It is never read, and the next stage run in that folder removes it
(`sweep_stale_temps`: only files whose writer process `<pid>` no longer exists).

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
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from .errors import PipelineError

TMP_PREFIX = ".tmp-"   # temp files start with this, so leftovers are easy to spot


@contextlib.contextmanager
def atomic_paths(*dests: str | os.PathLike,
                 clear: tuple[str | os.PathLike, ...] = ()) -> Iterator[list[Path]]:
    """Yield one temp path beside each of `dests`; on success flush them all, remove the
    files named in `clear` (in that order), then rename each temp onto its destination in
    the order given (so the last one named lands last: name the file that marks a whole
    set last, and clear it first, and no kill leaves it beside another run's files)."""
    dests = [Path(d) for d in dests]
    tmps: list[Path] = []
    try:
        for dest in dests:
            # The pid in the name tells `sweep_stale_temps` whether the writer still lives.
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{dest.name}.{os.getpid()}.",
                                       dir=dest.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        for tmp in tmps:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)   # mkstemp makes 0600; artifacts are meant to be shared
        for path in clear:
            Path(path).unlink(missing_ok=True)
        for tmp, dest in zip(tmps, dests):
            os.replace(tmp, dest)
    except BaseException as exc:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and not exc.filename:
            # e.g. ENOSPC from write or fsync names no file: say where it happened
            raise OSError(exc.errno, exc.strerror, str(dests[0].parent)) from exc
        raise
    for folder in dict.fromkeys(d.parent for d in dests):
        _fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success fsync it and rename it onto `dest`."""
    with atomic_paths(dest) as (tmp,):
        yield tmp


def sweep_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temp files left in `folder` by writers that were killed; return them.

    A temp file is stale when the process named in it is gone on this machine. Stages call
    this holding the folder's `model_lock`, which also covers a writer on another machine
    (whose pid means nothing here) when the folder is shared and its filesystem honours flock.
    """
    removed = []
    for path in Path(folder).glob(TMP_PREFIX + "*"):
        try:
            pid = int(path.name.rsplit(".", 2)[-2])
        except (ValueError, IndexError):
            continue                    # not named by atomic_paths: not ours to remove
        if pid != os.getpid() and not _alive(pid):
            if path.is_dir() and not path.is_symlink():   # a temp folder (import's)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def temp_dir(dest: str | os.PathLike) -> Path:
    """A new empty folder beside `dest`, named so `sweep_stale_temps` removes it once its
    writer is gone: fill it, then rename it onto `dest` (last: the folder appears whole)."""
    dest = Path(dest)
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dest.name}.{os.getpid()}.",
                                 dir=dest.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)                 # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                     # exists, owned by another user
    return True


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(dest: str | os.PathLike, obj) -> None:
    atomic_write_bytes(dest, json_bytes(obj))


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
        # flock locks belong to an open file, not a process: a second open of a lock file
        # this thread already holds would wait for itself forever (a registry that is also
        # a model folder). Refused instead, in one line.
        key = (os.fstat(handle.fileno()).st_dev, os.fstat(handle.fileno()).st_ino,
               threading.get_ident())
        if key in _HELD:
            raise LockError(f"{folder}: already locked by this run as {_HELD[key]}; one "
                            "folder cannot play two roles (a model folder and a registry?)")
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD[key] = folder
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


_HELD: dict[tuple[int, int, int], Path] = {}   # (device, inode, thread) -> the folder locked


class LockError(PipelineError):
    """A lock this thread holds already: waiting would never end."""
