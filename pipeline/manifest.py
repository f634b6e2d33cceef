"""`<out>/<model>/manifest.json`: what was built, and the integrity check that guards loading.

The manifest is written last (atomically) by `export`. Its `files` map names each artifact
(relative to the model folder) to its sha256 and size. `check_manifest` is the gate every
later stage passes before it loads anything: TorchScript files are code and ONNX files
are parsed by C++, so nothing is opened until its bytes are known to be the ones exported.

    >>> manifest = check_manifest(Path("exported/forecaster"))   # IntegrityError if not
    >>> manifest["files"]["model.onnx"]["sha256"]
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from .errors import IntegrityError
from .fsio import atomic_write_json, sha256_file

MANIFEST = "manifest.json"


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def build_manifest(model_dir: Path, names: list[str], sources: dict[str, Path] | None = None,
                   **fields) -> dict:
    """The manifest of `names` (files in `model_dir`) with `fields`; `sources` maps a name
    to the file to hash instead (a temp file about to be renamed onto that name)."""
    sources = sources or {}
    files = {name: file_entry(sources.get(name, model_dir / name)) for name in names}
    return {"files": files, **fields}


def write_manifest(model_dir: Path, names: list[str], **fields) -> dict:
    """Hash `names` (files in `model_dir`) and write the manifest with `fields` beside them."""
    manifest = build_manifest(model_dir, names, **fields)
    atomic_write_json(model_dir / MANIFEST, manifest)
    return manifest


def read_manifest(model_dir: Path) -> dict:
    path = Path(model_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntegrityError(f"{path}: not found; run `python -m pipeline export` first") from None
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable ({exc})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{path}: has no 'files' table")
    return manifest


def safe_member(model_dir: Path, name: str) -> Path:
    """Resolve a manifest entry inside `model_dir`, refusing anything that leads out of it."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise IntegrityError(f"manifest entry {name!r}: not a plain relative path")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise IntegrityError(f"manifest entry {name!r}: points outside {model_dir}")
    root = Path(model_dir).resolve()
    path = (root / pure).resolve()   # follows symlinks: a link out of the folder is refused
    if root not in path.parents:
        raise IntegrityError(f"manifest entry {name!r}: resolves outside {model_dir}")
    return path


def require_listed(model_dir: Path, manifest: dict, names) -> None:
    """IntegrityError unless the manifest lists every file in `names`."""
    for name in names:
        if name not in manifest["files"]:
            raise IntegrityError(f"{Path(model_dir) / MANIFEST}: does not list {name}")


def check_manifest(model_dir: str | os.PathLike, require: tuple[str, ...] = ()) -> dict:
    """Check every file the manifest names (path, size, sha256); return the manifest.

    `require` lists files that must be among the entries (e.g. the artifact about to load).
    Raises IntegrityError naming the first file that is missing, truncated or altered.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    require_listed(model_dir, manifest, require)
    for name, entry in manifest["files"].items():
        path = safe_member(model_dir, name)
        try:
            size, digest = int(entry["size"]), str(entry["sha256"])
        except (TypeError, KeyError, ValueError):
            raise IntegrityError(f"manifest entry {name!r}: needs 'sha256' and 'size'") from None
        if not path.is_file():
            raise IntegrityError(f"{model_dir / name}: missing")
        actual = path.stat().st_size
        if actual != size:
            raise IntegrityError(f"{model_dir / name}: size {actual} bytes, manifest says {size}")
        if sha256_file(path) != digest:
            raise IntegrityError(f"{model_dir / name}: sha256 differs from the manifest (altered)")
    return manifest
