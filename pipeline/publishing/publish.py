"""Stage 4: publish verified artifacts as an immutable, numbered release Triton can serve.

    python -m pipeline publish --model forecaster --signing-key .keys/signing.key \
        [--registry DIR] [--version N]

Version N of a model is four Triton models in the repository (default `<out>/model_repository`),
two for a bidirectional model (no stream artifacts):

    <model>_onnx/config.pbtxt           <model>_onnx/N/        model.onnx + the three below
    <model>_torchscript/config.pbtxt    <model>_torchscript/N/ model.pt, manifest.json,
                                                               verification.json, README.md,
                                                               model.sig (signing.py)
    <model>_stream_onnx/, <model>_stream_torchscript/: the same for model_stream.onnx / .pt
                                        (served as model.onnx / model.pt; see triton.py)

plus `<model>-N.tar.gz` of all of them beside the repository (see release.py). Gates: the build
passes `check_manifest`, and its `verification.json` passed, judged exactly the files
now on disk (sha256) and ran each published runtime (onnx, torchscript, their stream
artifacts), and a signing key is given (or `unsigned=True`, said in the card).
Immutability (versions.py): a build already published (same sha256s) is a no-op naming its
version; another build under an existing number is refused; a released build that
lacks the Triton models --deploy now adds is published whole as a new version;
config.pbtxt never changes. Publishers
of one repository take turns on a lock, so of two racing for version N the second finds it
taken: refused if its build differs, a no-op if it is the same build.
Each version folder is staged as `<model>_<runtime>/.staging-*/N/`, signed there, and renamed
into place (atomic; the rename also fails on an existing version), so Triton never sees half
a folder or an unsigned one; staged under its own number, the signed statement names it by
that. Staging sits in the Triton model folder, not the repository root: Triton takes every
subfolder of the root, dot-folders too, for a model (triton core, GetDirectorySubdirs), but
skips non-integer version folders (model_lifecycle.cc, VersionsToLoad).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..checkpoint import CONFIG, read_config
from ..errors import IntegrityError, PublishError
from ..fsio import atomic_write_bytes, ensure_dir, model_lock
from ..manifest import MANIFEST, check_manifest, file_entry, require_listed, safe_member
from ..runtimes import ARTIFACTS, STREAM_ARTIFACTS
from ..specs import ModelSpec, Recipe
from .card import model_card
from .covered import CONFIG_KEY, config_entry
from .deploy import VARIANT_SOURCES, VARIANT_WEIGHTS, deploy_keys
from .release import tarball_path, write_tarball
from .signing import SIGNATURE, fingerprint, load_private_key, sign_version
from .triton import (BACKENDS, TRITON_CONFIG, config_pbtxt, legacy_config_pbtxt, parse_config,
                     runtimes_for, triton_name)
from .versions import choose_version, published_versions

VERIFICATION = "verification.json"
CARD = "README.md"
STAGING_PREFIX = ".staging-"
# Triton runtime (triton.BACKENDS key) -> the build's file it serves
SOURCES = {**ARTIFACTS, **{f"stream_{r}": name for r, name in STREAM_ARTIFACTS.items()},
           **VARIANT_SOURCES}


@dataclass(frozen=True)
class PublishConfig:
    model: str
    out: Path = Path("exported")
    registry: Path | None = None      # None: <out>/model_repository
    version: int | None = None        # None: one past the highest published
    signing_key: Path | None = None   # PEM ECDSA private key that signs each version folder
    unsigned: bool = False            # publish without a signature; must be asked for
    deploy: str | None = None         # "best" or "RUNTIME:PRECISION" (publishing/deploy.py)

    @property
    def repository(self) -> Path:
        return Path(self.registry) if self.registry else Path(self.out) / "model_repository"


def check_verification(model_dir: Path, manifest: dict) -> dict:
    """Return verification.json if it passed and judged the very files in the manifest."""
    path = model_dir / VERIFICATION
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise PublishError(f"{path}: not found; run `python -m pipeline verify --model "
                           f"{model_dir.name}` first") from None
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: unreadable ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("artifacts"), dict):
        raise PublishError(f"{path}: not a verification report (no 'artifacts' table)")
    if report.get("model") != manifest.get("model"):
        raise PublishError(f"{path}: verifies {report.get('model')!r}, not {manifest.get('model')!r}")
    if report.get("passed") is not True:
        failed = [r for r in report.get("rows") or [] if isinstance(r, dict) and not r.get("passed")]
        why = "".join(f" ({r.get('runtime')} at batch {r.get('batch')}, seq {r.get('seq')}: "
                      f"{r.get('reason')})" for r in failed[:1])
        raise PublishError(f"{path}: verification failed{why}; only verified builds are published")
    judged = report["artifacts"]
    for name in manifest["files"]:
        if name not in judged:
            raise PublishError(f"{path}: did not judge {name}; run verify again")
    for name, entry in judged.items():
        current = manifest["files"].get(name) or file_entry(safe_member(model_dir, name))
        if not isinstance(entry, dict) or (entry.get("sha256"), entry.get("size")) != \
                (current["sha256"], current["size"]):
            raise PublishError(f"{path}: judged another {name} than the one on disk (sha256 "
                               "differs); run verify again")
    return report


def check_ran(path: Path, report: dict, runtimes) -> None:
    """PublishError unless verify ran each fp32 Triton model's runtime (`runtimes`: onnx,
    torchscript, stream_onnx, ...) and, for a stream one, its stream checks: a model card
    must not call model.pt verified when verify only ran model.onnx."""
    ran = {r.get("name"): r for r in report.get("runtimes") or [] if isinstance(r, dict)}
    missing = [rt for rt in runtimes if rt.removeprefix("stream_") not in ran
               or rt.startswith("stream_") and ran[rt.removeprefix("stream_")].get(
                   "stream_passed") is not True]
    if missing:
        asked = sorted({rt.removeprefix("stream_") for rt in runtimes})
        raise PublishError(f"{path}: verify did not check {', '.join(missing)} (it ran "
                           f"{', '.join(ran) or 'nothing'}); run verify with "
                           f"{' '.join(f'--runtime {r}' for r in asked)} (its default) before "
                           "publishing them")


def stage(repository: Path, model_dir: Path, recipe: Recipe, runtime: str, version: int,
          manifest: dict, report: dict, metrics: dict, published: str, config_text: str,
          signing_key: Path | None = None) -> Path:
    """Write (and sign) one version folder as `<model>_<runtime>/.staging-*/N`; return it."""
    spec = recipe.model
    root = ensure_dir(repository / triton_name(spec.name, runtime))
    holder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    staging = holder / str(version)
    try:
        staging.mkdir(0o755)
        os.chmod(staging, 0o755)    # whatever the umask; Triton may run as another user
        filename = BACKENDS[runtime][3]
        served = {filename: SOURCES[runtime]}          # {file in the version: build's file}
        if runtime in VARIANT_WEIGHTS:                 # an IR's weights beside its xml
            served[str(Path(filename).with_suffix(".bin"))] = VARIANT_WEIGHTS[runtime]
        for name, source in served.items():
            shutil.copyfile(model_dir / source, staging / name)
            if file_entry(staging / name) != manifest["files"][source]:
                raise IntegrityError(f"{model_dir / source}: changed while being copied")
        shutil.copyfile(model_dir / VERIFICATION, staging / VERIFICATION)
        signed_by = fingerprint(load_private_key(signing_key)) if signing_key else None
        (staging / CARD).write_text(model_card(spec, runtime, version, metrics, report,
                                               signed_by, recipe.source))
        release = {
            "files": {n: file_entry(staging / n) for n in (*served, VERIFICATION, CARD)},
            "model": spec.name, "version": version, "runtime": runtime,
            "triton_model": triton_name(spec.name, runtime), "published": published,
            "export": manifest,     # the build's own manifest: its files, signature, versions
            # what Triton reads beside the folder, covered by the signature (covered.py)
            CONFIG_KEY: config_entry(config_text),
        }
        (staging / MANIFEST).write_text(json.dumps(release, indent=2) + "\n")
        check_manifest(staging)     # the release passes the same gate as the build
        if signing_key:             # last: the signature covers every file above
            sign_version(staging, signing_key)
        for path in staging.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(path, 0o444)   # a published file is never edited in place
        return staging
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise


def commit(staging: Path, target: Path) -> None:
    """Rename a staged folder onto `target`; whoever renames first owns the version."""
    try:
        if target.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        os.rename(staging, target)   # atomic; fails when target is a non-empty folder
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise PublishError(f"{target}: version {target.name} was published by another "
                               "process meanwhile; nothing was changed") from None
        raise


def kept_config(repository: Path, spec: ModelSpec, runtime: str) -> str:
    """The text `<model>_<runtime>/config.pbtxt` has once published: the spec's, or an
    existing one from before TorchScript models took the contract's tensor names (kept).
    Refuse any other existing config."""
    text = config_pbtxt(spec, runtime)
    parse_config(text)               # a config Triton cannot parse is never written
    path = repository / triton_name(spec.name, runtime) / TRITON_CONFIG
    if not path.exists():
        return text
    have = path.read_text()
    if have not in (text, legacy_config_pbtxt(spec, runtime)):
        raise PublishError(f"{path}: differs from {spec.name}'s spec, and every version of a "
                           "Triton model shares it; publish into another --registry")
    return have


def write_config(repository: Path, spec: ModelSpec, runtime: str, text: str) -> None:
    """Write `<model>_<runtime>/config.pbtxt` (the `kept_config` text) if absent."""
    path = ensure_dir(repository / triton_name(spec.name, runtime)) / TRITON_CONFIG
    if not path.exists():
        atomic_write_bytes(path, text.encode())


def main(config: PublishConfig, log: Callable[[str], None] = print) -> dict:
    """Publish `<out>/<model>/` into the repository; return what happened.

    {"model", "version", "published": False when the build was already there, "folders",
    "tarball", "signed_by": the key's fingerprint, None when unsigned}
    """
    if config.signing_key is not None and config.unsigned:
        raise PublishError("--signing-key and --unsigned contradict each other; give one")
    if config.signing_key is None and not config.unsigned:
        raise PublishError("no --signing-key: a published version must prove who built it; "
                           "give --signing-key FILE (`python -m pipeline keygen DIR` makes "
                           "one) or, to publish without a signature, --unsigned")
    signed_by = fingerprint(load_private_key(config.signing_key)) if config.signing_key else None
    model_dir = Path(config.out) / config.model
    if not model_dir.is_dir():
        raise PublishError(f"{model_dir}: no such model folder; run train, export and verify first")
    repository = ensure_dir(config.repository)
    # The model lock keeps export/verify from replacing files mid-copy; the repository
    # lock makes publishers take turns, so "which version is free" stays true until rename.
    with model_lock(model_dir), model_lock(repository):
        manifest = check_manifest(model_dir, require=(CONFIG, *ARTIFACTS.values()))
        trained = read_config(model_dir)
        recipe, metrics = trained["recipe"], dict(trained.get("metrics") or {})
        spec, runtimes = recipe.model, runtimes_for(recipe.model)
        require_listed(model_dir, manifest, [SOURCES[r] for r in runtimes])
        report = check_verification(model_dir, manifest)
        check_ran(model_dir / VERIFICATION, report, runtimes)
        # verified precision variants asked for with --deploy (issue 23): extra Triton models
        runtimes += tuple(deploy_keys(model_dir, spec, manifest, report, config.deploy))
        for runtime in BACKENDS:      # leftovers of a killed run; only lock holders stage
            root = repository / triton_name(spec.name, runtime)
            for old in root.glob(STAGING_PREFIX + "*") if root.is_dir() else ():
                log(f"removing {old}, left by an interrupted publish")
                shutil.rmtree(old, ignore_errors=True)
        build = {name: entry["sha256"] for name, entry in manifest["files"].items()}
        existing = published_versions(repository, spec.name)
        version, already, lacking = choose_version(
            existing, build, config.version, spec.name, runtimes,
            released=lambda v: tarball_path(repository, spec.name, v).exists())
        have = existing.get(version, {})
        if not already and version > max(existing, default=0) + 1 and config.version is None:
            log(f"{spec.name}: {tarball_path(repository, spec.name, version - 1).name} beside "
                f"the repository is another release (not in it); published as version {version}")
        if lacking:                       # released before without what --deploy adds
            log(f"{spec.name}: this build was released without {', '.join(lacking)}; "
                f"published whole as version {version} (a release never changes)")
        for folder in have.values():
            check_manifest(folder)    # a damaged published version is reported, not reused
        published = datetime.now(timezone.utc).isoformat(timespec="seconds")
        folders = {rt: repository / triton_name(spec.name, rt) / str(version) for rt in runtimes}
        staged: dict[str, Path] = {}
        configs = {rt: kept_config(repository, spec, rt) for rt in runtimes}
        try:
            for runtime in runtimes:
                if runtime not in have:
                    staged[runtime] = stage(repository, model_dir, recipe, runtime, version,
                                            manifest, report, metrics, published,
                                            configs[runtime], config.signing_key)
            for runtime in runtimes:
                write_config(repository, spec, runtime, configs[runtime])
            for runtime, folder in staged.items():
                commit(folder, folders[runtime])
        finally:
            for leftover in staged.values():   # the .staging-* holder, empty once committed
                shutil.rmtree(leftover.parent, ignore_errors=True)
        if already and staged:
            log(f"{spec.name} version {version}: completed with the missing {', '.join(staged)}")
        unsigned = [str(f) for f in have.values() if not (f / SIGNATURE).exists()]
        if signed_by and unsigned:
            log(f"{', '.join(unsigned)}: published unsigned before; versions are immutable, so "
                "it stays unsigned (a new build is published signed)")
        tarball = write_tarball(repository, spec.name, version)
    return {"model": spec.name, "version": version, "published": not already,
            "folders": folders, "tarball": tarball, "signed_by": signed_by}
