"""Release tarballs: `<model>-<N>.tar.gz` beside the repository, and the only safe way back.

    >>> write_tarball(Path("exported/model_repository"), "forecaster", 3)   # publish does this
    >>> extract_release("exported/forecaster-3.tar.gz", "/srv/triton/models")

A release tarball holds `<model>_onnx/` and `<model>_torchscript/`, each with its
config.pbtxt and version folder, with paths from the repository root: unpacking one into a
Triton model repository installs that version. Packing is deterministic (sorted names,
owner 0, the release's publish time as mtime, gzip without a timestamp), so publishing the
same release twice gives the same bytes. `extract_release` (unpack.py) checks every member
first and refuses anything that could land outside the target folder, change a file already
there, or unpack otherwise with GNU tar than with Python's tarfile.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import datetime
from pathlib import Path

from ..errors import PublishError
from ..fsio import atomic_write_bytes
from ..manifest import MANIFEST
from .triton import BACKENDS, TRITON_CONFIG, triton_name
from .unpack import extract_release

__all__ = ["extract_release", "release_tar", "tarball_path", "write_tarball"]


def tarball_path(repository: Path, model: str, version: int) -> Path:
    return Path(repository).parent / f"{model}-{version}.tar.gz"


def release_tar(repository: Path, model: str, version: int) -> bytes:
    """Deterministic .tar.gz of the version folders and their configs (paths from the root)."""
    names = []
    for runtime in BACKENDS:
        base = triton_name(model, runtime)
        folder = repository / base / str(version)
        if not folder.is_dir():        # a bidirectional model has no stream models
            continue
        names += [f"{base}/{TRITON_CONFIG}", f"{base}/{version}"]
        names += [f"{base}/{version}/{p.name}" for p in sorted(folder.iterdir())]
    published = json.loads((repository / names[1] / MANIFEST).read_text())["published"]
    mtime = int(datetime.fromisoformat(published).timestamp())
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tar.gettarinfo(str(repository / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            info.mode = 0o755 if info.isdir() else 0o444
            if info.isdir():
                tar.addfile(info)
            else:
                with open(repository / name, "rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


def write_tarball(repository: Path, model: str, version: int) -> Path:
    dest = tarball_path(repository, model, version)
    data = release_tar(repository, model, version)
    if not dest.exists():
        atomic_write_bytes(dest, data)
    elif dest.read_bytes() != data:
        raise PublishError(f"{dest}: exists with other content; releases are immutable")
    return dest
