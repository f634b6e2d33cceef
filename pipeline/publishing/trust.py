"""What a consumer checks before it trusts a release: every version signed by the right key.

    python -m pipeline verify-release exported/forecaster-1.tar.gz --public-key .keys/signing.pub
    >>> verify_registry(Path("exported/model_repository"), Path(".keys/signing.pub"))  # serve
    >>> runner = open_published(Path(".../forecaster_onnx/1"), Path(".keys/signing.pub"))

`verify_release` takes any of: one version folder (`<model>_onnx/3`), a Triton model folder
(`<model>_onnx`: all its versions), a registry (all versions of all models, or of one with
`model=`), or a release tarball (unpacked with the safe `extract_release` into a temporary
folder first). All versions, not only the latest: Triton can be told to serve any of them,
and a tampered old version is as dangerous as a new one. Each is checked by
`signing.verify_version` (signature, re-hash of every file, the folder's place); the first
failure raises, so a True result means every version found holds. Finding no version at all
is refused too: verifying nothing proves nothing.
"""
from __future__ import annotations

import json
import os
import tarfile
import tempfile
import zlib
from pathlib import Path

from ..errors import SignatureError, first_line
from ..manifest import MANIFEST
from .covered import release_spec
from .versions import VERSION_DIR
from .signing import load_public_key, verify_version
from .deploy import pair_of
from .triton import BACKENDS, triton_name


def _versions(model_folder: Path) -> list[Path]:
    """The folders Triton takes for versions of a model, in version order."""
    return sorted((d for d in model_folder.iterdir()
                   if d.is_dir() and VERSION_DIR.fullmatch(d.name)), key=lambda d: int(d.name))


def version_folders(root: Path, model: str | None = None) -> list[Path]:
    """Every version folder at or under `root` (a version, Triton model or registry folder)."""
    root = Path(root)
    if not root.is_dir():
        raise SignatureError(f"{root}: no such folder or release tarball")
    if (root / MANIFEST).is_file():
        return [root]                                   # one version folder
    if _versions(root):
        return _versions(root)                          # one Triton model: all its versions
    wanted = {triton_name(model, rt) for rt in BACKENDS} if model else None
    return [v for d in sorted(root.iterdir())
            if d.is_dir() and (wanted is None or d.name in wanted) for v in _versions(d)]


def verify_registry(registry: str | os.PathLike, public_key: str | os.PathLike,
                    model: str | None = None) -> list[dict]:
    """Verify every published version under `registry` (see `version_folders`) with
    `public_key`; return one `verify_version` result per version folder.

    Raises SigningKeyError for a key file that is not a key, SignatureError for the first
    version that fails or when there is none. serve's pre-flight check calls this.
    """
    load_public_key(public_key)                         # a bad key is named before any folder
    folders = version_folders(Path(registry), model)
    if not folders:
        which = f" of {model}" if model else ""
        raise SignatureError(f"{registry}: no published version{which} found to verify")
    return [verify_version(folder, public_key) for folder in folders]


def verify_release(path: str | os.PathLike, public_key: str | os.PathLike,
                   model: str | None = None) -> list[dict]:
    """`verify_registry` for a folder, or for a release tarball unpacked into a temp folder.

    For a tarball, each result's "folder" is `<tarball>/<triton model>/<version>` (the
    temporary copy is gone when this returns).
    """
    from .release import extract_release

    path = Path(path)
    if not path.is_file():
        return verify_registry(path, public_key, model)
    load_public_key(public_key)
    with tempfile.TemporaryDirectory(prefix="verify-release-") as tmp:
        try:
            extract_release(path, tmp)                  # refuses links, `..`, devices first
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise SignatureError(f"{path}: not a release tarball ({first_line(exc)})") from None
        results = verify_registry(tmp, public_key, model)
    for result in results:
        result["folder"] = path / result["folder"].parent.name / result["folder"].name
    return results


def open_published(folder: str | os.PathLike, public_key: str | os.PathLike,
                   device: str = "cpu", threads: int | None = None):
    """Verify a published version folder, then load its model file as a Runner.

    The spec is the one the signed manifest carries (the build's `spec`; for a build made
    before specs were recorded, the built-in recipe of that name); the build's recorded
    input/output signature must equal it, or nothing is loaded.
    """
    from ..runtimes import load_runner, load_stream_runner
    from ..specs import to_dict

    folder = Path(folder)
    info = verify_version(folder, public_key, served=False)   # config.pbtxt: if there
    spec = release_spec(info["manifest"])
    if spec is None or info["runtime"] not in BACKENDS:
        raise SignatureError(f"{folder / MANIFEST}: names model {info['model']!r}, runtime "
                             f"{info['runtime']!r}; this pipeline knows neither")
    # a stream model (issue 13) is checked against the spec's stream tensors
    stream = info["runtime"].startswith("stream_")
    inputs, outputs = (spec.stream_inputs, spec.stream_outputs) if stream else \
        ((spec.input,), (spec.output,))
    expected = json.loads(json.dumps({"inputs": [to_dict(t) for t in inputs],
                                      "outputs": [to_dict(t) for t in outputs]}))
    recorded = (info["manifest"].get("export") or {}).get(
        "stream_signature" if stream else "signature")
    if recorded != expected:
        raise SignatureError(f"{folder / MANIFEST}: the build's input/output signature "
                             f"differs from {spec.name}'s spec; not loaded")
    runtime, precision = pair_of(info["runtime"])      # a deployed variant (issue 23)
    if precision != "fp32" or runtime == "openvino":
        from ..precision.choice import load_variant
        return load_variant(runtime, precision, spec, folder / BACKENDS[info["runtime"]][3],
                            threads, stream)
    if stream:
        return load_stream_runner(info["runtime"].removeprefix("stream_"), spec,
                                  folder / BACKENDS[info["runtime"]][3], device, threads)
    return load_runner(info["runtime"], spec, folder / BACKENDS[info["runtime"]][3], device,
                       threads)
