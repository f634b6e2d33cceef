"""Pre-flight of a published model repository: what `serve` checks before tritonserver starts.

    >>> preflight(Path("exported/model_repository"))
    {'classifier_onnx': [1], 'classifier_torchscript': [1], ...}

Every Triton model folder (every subfolder of the repository, as Triton sees it) with at
least one integer version folder is served; it must hold config.pbtxt and each of its version
folders must pass `check_version` first, or nothing starts.
`check_version` is the one place a version is admitted: the release manifest (every file it
names, sha256 and size, the model file itself among them) and, with `serve --public-key FILE`,
the release signature (`publishing.signing.verify_version`: signed by that key, every file
re-hashed, the folder where its signed manifest says, and what Triton reads beside it:
config.pbtxt as signed, nothing else there; publishing/covered.py). Without a key only
corruption is caught, and hand-written configs (your own Triton models) are served as they are.
An openvino model is checked against this CPU (`check_precision`): `HINT_BF16: YES` where
the CPU has no bf16 units is refused, and so is one without it where the CPU has them
(OpenVINO would then compile the f32 pair in bf16, which verify never measured). An int8
model (`<model>_onnx_int8`, published by `--deploy`) whose file takes int8 (s8) weights is
refused on a CPU without VNNI (`check_int8`): onnxruntime's u8 x s8 kernels saturate there
(pipeline/precision/int8.py), so it would answer wrong, not fail.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import PipelineError, ServeError
from ..manifest import check_manifest
from ..publishing.versions import VERSION_DIR
from ..publishing.triton import TRITON_CONFIG

DEFAULT_FILENAME = re.compile(r'^\s*default_model_filename\s*:\s*"([^"]+)"', re.M)
OPENVINO = re.compile(r'^\s*backend\s*:\s*"openvino"', re.M)
HINT_BF16 = re.compile(r'key\s*:\s*"HINT_BF16"\s*value\s*:\s*\{\s*string_value\s*:\s*"yes"',
                       re.I)


def check_precision(name: str, config_text: str, cpu_bf16: bool | None = None) -> None:
    """ServeError (one line) when an openvino model's precision cannot be what was verified
    on this CPU; nothing for other backends."""
    if not OPENVINO.search(config_text):
        return
    if cpu_bf16 is None:
        from ..precision.bf16 import cpu_has_bf16
        cpu_bf16 = cpu_has_bf16()
    bf16 = bool(HINT_BF16.search(config_text))
    if bf16 and not cpu_bf16:
        raise ServeError(f"{name}: HINT_BF16 asks for bf16, which this CPU cannot run (no "
                         "AVX512_BF16 or AMX); not served (serve the f32 pair, "
                         f"{name.removesuffix('_bf16')}, or move to a CPU with bf16 units)")
    if not bf16 and cpu_bf16:
        raise ServeError(f"{name}: an f32 OpenVINO model, which OpenVINO compiles in bf16 on "
                         "this CPU (AVX512_BF16/AMX) and the openvino backend cannot keep in "
                         "f32; not served (deploy openvino:bf16, verified on this CPU, instead)")


def check_version(folder: Path, model_file: str | None, public_key: Path | None = None) -> None:
    """Admit one published version folder, or raise PipelineError naming what fails."""
    check_manifest(folder, require=(model_file,) if model_file else ())
    if public_key is not None:
        from ..publishing.signing import verify_version
        verify_version(folder, public_key)       # config.pbtxt and its folder included


def preflight_model(folder: Path, public_key: Path | None = None) -> list[int]:
    """The published versions of one Triton model folder, each checked; ServeError naming
    the first that fails. [] when it holds no version (nothing to serve)."""
    versions = sorted(int(v.name) for v in folder.iterdir()
                      if v.is_dir() and VERSION_DIR.fullmatch(v.name)) if folder.is_dir() else []
    config = folder / TRITON_CONFIG
    found = DEFAULT_FILENAME.search(config.read_text(errors="replace")) \
        if versions and config.is_file() else None
    for version in versions:
        try:
            check_version(folder / str(version), found and found.group(1), public_key)
        except PipelineError as exc:
            raise ServeError(f"{folder.name} version {version} is not served: {exc}") from None
    if versions and not config.is_file():
        raise ServeError(f"{folder.name}: version folders but no {TRITON_CONFIG} (Triton may "
                         "make one up for it); not served")
    if versions:
        check_precision(folder.name, config.read_text(errors="replace"))
        check_int8(folder.name, [folder / str(v) / (found.group(1) if found else "model.onnx")
                                 for v in versions])
    return versions


def check_int8(name: str, files: list[Path], vnni: bool | None = None) -> None:
    """ServeError (one line) when a deployed int8 model's file has int8 (s8) weights and
    this CPU has no VNNI; export wrote uint8 ones on such a CPU."""
    if not name.endswith("_int8"):
        return
    from ..precision.int8 import cpu_has_vnni, signed_weights
    if vnni is None:
        vnni = cpu_has_vnni()
    for path in files:
        if not vnni and path.suffix == ".onnx" and path.is_file() and signed_weights(path):
            raise ServeError(f"{name}: {path.parent.name}/{path.name} takes int8 weights, which "
                             "onnxruntime's integer kernels saturate on this CPU (no VNNI); "
                             "not served (re-export int8 on this CPU: it writes uint8 weights)")


def preflight(registry: Path, public_key: Path | None = None) -> dict[str, list[int]]:
    """{Triton model: its published versions}, every version folder checked; ServeError if
    the repository is missing, holds no published version, or a version fails its check."""
    if public_key is not None:
        from ..publishing.signing import load_public_key
        load_public_key(public_key)      # a bad key file is named before any folder
    if not registry.is_dir():
        raise ServeError(f"{registry}: no such model repository; publish first "
                         "(`python -m pipeline publish`, or `make publish`)")
    models: dict[str, list[int]] = {}
    # every subfolder, as Triton takes every one for a model, config.pbtxt or not
    for folder in sorted(p for p in registry.iterdir() if p.is_dir()):
        versions = preflight_model(folder, public_key)
        if versions:     # a config without a version: nothing to serve (Triton would refuse it)
            models[folder.name] = versions
    if not models:
        raise ServeError(f"{registry}: no published model version in it; publish first "
                         f"(`python -m pipeline publish --registry {registry}`)")
    return models
