"""Unpacking a release tarball so that what is verified is what `tar xzf` unpacks.

    >>> extract_release("exported/forecaster-3.tar.gz", "/srv/triton/models")   # files written

Two passes over the tarball. The first reads headers only (and each version's manifest.json,
at most MAX_MANIFEST bytes) and refuses, before any member's data is read:
- names that leave the target (absolute, `..`, NUL, backslash), links, devices and fifos;
- two members that name one file: repeated names (Python's tarfile keeps the first, GNU tar
  the last, so the file verified would not be the file served), and names equal after
  dropping `./`, doubled or trailing slashes, or case (one file on a case-insensitive disk);
- a member whose size exceeds what its manifest says (checked at its header when the
  manifest came first, as in the tarballs publish writes, else after the pass), and one
  with no manifest entry above MAX_UNLISTED bytes; more than MAX_MEMBERS members.
The second pass streams each file into a temporary folder (never into memory; each read
stops at its header's size, which was checked), compares it with any file already at its
place, then copies the new ones in. The temporary folder is removed whatever happens.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from ..errors import PublishError
from ..fsio import atomic_path, ensure_dir, sha256_file
from ..manifest import MANIFEST

MAX_MEMBERS = 10_000
MAX_MANIFEST = 16 << 20      # a manifest.json is a few KB
MAX_UNLISTED = 64 << 20      # config.pbtxt, model.sig, a file whose manifest comes later
CHUNK = 1 << 20


def _plan(tar_path, tar: tarfile.TarFile, dest) -> dict[str, tarfile.TarInfo]:
    """{normalised name: member}, every member checked by its header (see the docstring)."""
    members: dict[str, tarfile.TarInfo] = {}
    keys: dict[str, str] = {}                  # casefolded normalised name -> member name
    sizes: dict[str, int] = {}                 # normalised file name -> its manifest's size
    late: list[tuple[str, tarfile.TarInfo]] = []
    for count, member in enumerate(tar, 1):
        name, where = member.name, f"{tar_path}: member {member.name!r}"
        if count > MAX_MEMBERS:
            raise PublishError(f"{tar_path}: more than {MAX_MEMBERS} members; not a release")
        pure = PurePosixPath(name)
        if not name or "\x00" in name or "\\" in name or pure.is_absolute() \
                or ".." in pure.parts:
            raise PublishError(f"{where}: points outside {dest}")
        if member.issym() or member.islnk():
            raise PublishError(f"{where}: is a link (to {member.linkname!r}); refused")
        if not (member.isfile() or member.isdir()):
            raise PublishError(f"{where}: is a device or fifo; refused")
        norm = posixpath.normpath(name)
        if norm == ".":
            continue                           # `tar czf x.tgz .` names the root itself
        key = norm.casefold()
        if key in keys:
            raise PublishError(f"{where}: names the same file as member {keys[key]!r}"
                               f"{'' if keys[key] == name else ' (after ./, slashes or case)'}"
                               "; Python's tarfile and GNU tar would unpack different files")
        for parent in PurePosixPath(key).parents:
            if str(parent) in keys and members[_norm(keys[str(parent)])].isfile():
                raise PublishError(f"{where}: lies under member {keys[str(parent)]!r}, a file")
        keys[key], members[norm] = name, member
        if member.isfile():
            _check_size(where, member, sizes.get(norm), late, norm)
            if pure.name == MANIFEST:
                _listed(tar_path, tar, member, norm, sizes)
    for norm, member in late:                  # members that came before their manifest
        _check_size(f"{tar_path}: member {member.name!r}", member, sizes.get(norm), None, norm)
    return members


def _norm(name: str) -> str:
    return posixpath.normpath(name)


def _check_size(where: str, member: tarfile.TarInfo, listed: int | None, late, norm) -> None:
    if listed is not None:
        if member.size > listed:
            raise PublishError(f"{where}: {member.size:,} bytes, more than the {listed:,} its "
                               "manifest says; refused before reading it")
    elif member.size > (MAX_MANIFEST if posixpath.basename(norm) == MANIFEST else MAX_UNLISTED):
        raise PublishError(f"{where}: {member.size:,} bytes, and no manifest entry allows "
                           "that much; refused before reading it")
    elif late is not None:
        late.append((norm, member))


def _listed(tar_path, tar: tarfile.TarFile, member: tarfile.TarInfo, norm: str,
            sizes: dict[str, int]) -> None:
    """Record the sizes a version folder's manifest.json gives its files (bounded read)."""
    data = tar.extractfile(member).read(MAX_MANIFEST + 1)
    try:
        files = json.loads(data)["files"]
        folder = posixpath.dirname(norm)
        for name, entry in files.items():
            sizes[posixpath.normpath(posixpath.join(folder, name))] = int(entry["size"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PublishError(f"{tar_path}: member {member.name!r}: not a release manifest "
                           "(no files with sizes)") from None


def _copy(source, target: Path, size: int) -> str:
    """Stream `size` bytes at most from `source` to `target`; their sha256."""
    digest = hashlib.sha256()
    with open(target, "wb") as f:
        while size > 0 and (block := source.read(min(CHUNK, size))):
            size -= len(block)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def extract_release(tar_path: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Unpack a release tarball into `dest`; return the files written.

    Every member is checked before anything is written in `dest` (see the module's
    docstring); also refused: a path through an existing link out of `dest`, and a file that
    exists with other content (published versions are immutable; identical files are left
    as they are).
    """
    root = ensure_dir(dest).resolve()
    with tarfile.open(tar_path, "r:*") as tar:
        plan = _plan(tar_path, tar, dest)
    targets = {}
    for norm, member in plan.items():
        target = (root / norm).resolve()
        if target != root and root not in target.parents:
            raise PublishError(f"{tar_path}: member {member.name!r}: resolves outside {dest}")
        targets[norm] = target
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        staged: dict[str, Path] = {}
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                norm = posixpath.normpath(member.name)
                if norm not in plan or not member.isfile():
                    continue
                staged[norm] = Path(tmp) / str(len(staged))
                # the size checked in the first pass, whatever this header says
                digest = _copy(tar.extractfile(member), staged[norm], plan[norm].size)
                target = targets[norm]
                if target.exists() and (not target.is_file() or sha256_file(target) != digest):
                    raise PublishError(f"{tar_path}: member {member.name!r}: {target} exists "
                                       "with other content; refused")
        written = []
        for norm, member in plan.items():
            target = targets[norm]
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                ensure_dir(target.parent)
                with atomic_path(target) as tmp_target:
                    shutil.copyfile(staged[norm], tmp_target)
                written.append(target)
    return written
