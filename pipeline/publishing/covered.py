"""What Triton reads beside a version folder, held to the version's signature.

    >>> check_model_folder(Path("exported/model_repository/forecaster_onnx/2"), manifest)

Triton reads more than a version folder: the Triton model folder's `config.pbtxt` decides
which backend runs, which file it loads (`default_model_filename`), the tensors' dims and
the batch size, and every subfolder named by an integer is a version it may load. A
signature over the version folder alone would let all of that change unnoticed. So:
- publish records the sha256 and size of the config.pbtxt it writes in each version's
  manifest.json (`triton_config`), which the version's signature covers; the config on disk
  must match it byte for byte. A version published before this was recorded is held to the
  config its signed spec generates (`triton.config_pbtxt`, or the TorchScript names of
  before, `legacy_config_pbtxt`), byte for byte too.
- the model folder may hold nothing else: config.pbtxt, integer version folders (each
  verified on its own) and publish's own `.staging-*` folders (Triton skips non-integer
  folders). Any other file or folder there is refused, as an added file in a version is.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import SignatureError
from .triton import BACKENDS, TRITON_CONFIG, config_pbtxt, legacy_config_pbtxt

CONFIG_KEY = "triton_config"          # in a release manifest.json: {"sha256", "size"}
MAX_CONFIG = 1 << 20                  # a config.pbtxt is ~1 KB; never read a huge one whole


def config_entry(text: str) -> dict:
    data = text.encode()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def check_model_folder(folder: Path, manifest: dict, require_config: bool = True) -> None:
    """Raise SignatureError unless the Triton model folder holding version `folder` holds
    only what its signature covers (see the module docstring). `require_config=False`: a
    missing config.pbtxt is allowed (a version folder copied out alone, to be loaded by
    predict or score, not served); one that is there must match."""
    from .publish import STAGING_PREFIX
    from .versions import VERSION_DIR

    model = Path(folder).parent
    for entry in sorted(model.iterdir()):
        plain_dir = entry.is_dir() and not entry.is_symlink()
        if entry.name == TRITON_CONFIG and entry.is_file() and not entry.is_symlink():
            continue
        if plain_dir and (VERSION_DIR.fullmatch(entry.name) or
                          entry.name.startswith(STAGING_PREFIX)):
            continue
        raise SignatureError(f"{model}: {entry.name} not signed (beside {TRITON_CONFIG}, "
                             "where Triton looks; only the config and version folders may "
                             "lie there)")
    config = model / TRITON_CONFIG
    if not require_config and not config.exists() and not config.is_symlink():
        return
    if not config.is_file() or config.is_symlink():
        raise SignatureError(f"{config}: missing (or a link); Triton needs it and the "
                             "signature covers it")
    size = config.stat().st_size
    if size > MAX_CONFIG:
        raise SignatureError(f"{config}: altered after signing ({size:,} bytes)")
    data = config.read_bytes()
    recorded = manifest.get(CONFIG_KEY)
    if recorded is not None:
        if {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} != recorded:
            raise SignatureError(f"{config}: altered after signing (sha256 differs from the "
                                 f"digest in {folder.name}/manifest.json, which is signed)")
        return
    spec = release_spec(manifest)      # a version from before the digest was recorded
    runtime = manifest.get("runtime")
    if spec is None or runtime not in BACKENDS or data.decode(errors="replace") not in \
            (config_pbtxt(spec, runtime), legacy_config_pbtxt(spec, runtime)):
        raise SignatureError(f"{config}: differs from the config {folder.name}'s signed spec "
                             "gives; altered after signing")


def release_spec(manifest: dict):
    """The ModelSpec of a published version from its manifest.json: the export manifest's
    `spec`, or, for builds from before it was recorded, the built-in recipe named; None if
    neither (or the recorded one is not a valid spec)."""
    from ..specs import SPECS, model_spec_from_dict
    from ..validate import check_spec_dict

    export = manifest.get("export") if isinstance(manifest, dict) else None
    recorded = export.get("spec") if isinstance(export, dict) else None
    if recorded is None:
        return SPECS.get(manifest.get("model")) if isinstance(manifest, dict) else None
    try:
        check_spec_dict(recorded)            # numbers typed and in range (validate.py)
        spec = model_spec_from_dict(recorded)
    except (TypeError, ValueError, KeyError):
        return None
    return spec if spec.name == manifest.get("model") else None
