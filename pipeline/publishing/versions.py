"""Which version a build is published as: the version folders already in a repository,
the build each holds, and the rule that a published version never changes.

    versions = published_versions(repository, "churn")     # {N: {runtime: folder}}
    version, already = choose_version(versions, build, None, "churn", runtimes, released)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import PublishError
from ..manifest import MANIFEST
from .triton import BACKENDS, triton_name

VERSION_DIR = re.compile(r"0|[1-9][0-9]*")   # Triton ignores version folders with leading zeros


def published_versions(repository: Path, model: str) -> dict[int, dict[str, Path]]:
    """{version: {runtime: version folder}} of every version folder of this model's releases."""
    found: dict[int, dict[str, Path]] = {}
    for runtime in BACKENDS:
        root = repository / triton_name(model, runtime)
        for child in root.iterdir() if root.is_dir() else ():
            if child.is_dir() and VERSION_DIR.fullmatch(child.name):
                found.setdefault(int(child.name), {})[runtime] = child
    return found


def build_of(version_dir: Path) -> dict | None:
    """{file: sha256} of the build a version folder was published from; None if unreadable."""
    try:
        files = json.loads((version_dir / MANIFEST).read_text())["export"]["files"]
        return {name: entry["sha256"] for name, entry in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def choose_version(existing: dict[int, dict[str, Path]], build: dict, wanted: int | None,
                   model: str, runtimes=(), released=lambda version: False
                   ) -> tuple[int, bool, list[str]]:
    """(version, already published?, the Triton models a released version of this build
    lacked) for `build` as the Triton models `runtimes`, or PublishError if it would change
    one. A version holding the build is reused where it has every one of them, or can still
    be completed (its release tarball not written yet); a released one that lacks some (a
    variant deployed later) gives a new version. A version with no folder here but a
    release tarball beside the repository (a sibling repository's, or a version removed
    from this one) is taken too: its tarball never changes."""
    held = sorted(v for v, dirs in existing.items()
                  if any(build_of(d) == build for d in dirs.values()))
    fits = [v for v in held if all(rt in existing[v] for rt in runtimes) or not released(v)]
    lacking = [triton_name(model, rt) for rt in runtimes
               if rt not in existing[held[0]]] if held else []
    if wanted is not None and wanted in existing:
        if wanted in fits:
            return wanted, True, []
        if wanted in held:
            lacking = [triton_name(model, rt) for rt in runtimes if rt not in existing[wanted]]
            raise PublishError(f"{model} version {wanted} is released without "
                               f"{', '.join(lacking)}; releases are immutable (omit --version "
                               f"to publish this build with them as {free(existing, released)})")
        raise PublishError(f"{model} version {wanted} is already published with other artifacts; "
                           "versions are immutable (omit --version to publish as "
                           f"{free(existing, released)})")
    if wanted is not None and released(wanted):
        raise PublishError(f"{model} version {wanted} is released beside this repository "
                           f"({model}-{wanted}.tar.gz) but not in it; releases are immutable "
                           f"(omit --version to publish as {free(existing, released)})")
    if fits:
        return fits[0], True, []
    return wanted or free(existing, released), False, lacking


def free(existing: dict[int, dict[str, Path]], released) -> int:
    """The next version: above every one in the repository, and not released beside it."""
    version = max(existing, default=0) + 1
    while released(version):
        version += 1
    return version
