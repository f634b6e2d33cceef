"""Signed versions: who built a published version, and proof that nothing changed since.

    python -m pipeline keygen .keys                                    # signing.key + signing.pub
    python -m pipeline publish --signing-key .keys/signing.key          # signs every version
    python -m pipeline verify-release exported/model_repository/forecaster_onnx/1 \
        --public-key .keys/signing.pub

`manifest.json` catches corruption, not tampering: whoever can change `model.onnx` can
rewrite the manifest to match. A signature closes that hole. `sign_version` signs a version
folder with OpenSSF model signing (the `model-signing` package, key-based method): a
Sigstore bundle whose DSSE envelope holds an in-toto statement listing the sha256 of every
file in the folder, signed with an ECDSA key (P-256 from `keygen`; P-384 and P-521 are
accepted too). The bundle is `model.sig` inside the folder; Triton loads only the model file
named in config.pbtxt, so the extra file changes nothing for serving. No cryptography and no
bundle format is written here: model-signing and cryptography do both.

`verify_version` checks a folder before anything in it is loaded: the signature against the
given public key, then a re-hash of every file (one altered, added or removed is refused),
then the folder's place, then what Triton reads beside it (covered.py: config.pbtxt, whose
digest the signed manifest holds, and nothing else in the Triton model folder). model-signing names the folder in its statement only for
information and never compares it, so the binding to a place is ours: the signed
`manifest.json` names the Triton model and version, and a folder that lies elsewhere (a
version renamed 2 -> 3, an onnx version moved under another model) is refused.

A key's fingerprint is `sha256:` + the sha256 of its public key in PEM (SubjectPublicKeyInfo):
the same digest model-signing stores as the bundle's key hint, and `sha256sum signing.pub`
of a key written by `keygen`.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import SignatureError, SigningKeyError, first_line
from ..manifest import check_manifest

SIGNATURE = "model.sig"          # model-signing's own default name for the bundle
PRIVATE_KEY, PUBLIC_KEY = "signing.key", "signing.pub"
CURVES = ("secp256r1", "secp384r1", "secp521r1")   # what model-signing's key method takes


# --- keys ---------------------------------------------------------------------------------

def _public_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization as ser
    return public_key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def _check_curve(key, path: Path, what: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise SigningKeyError(f"{path}: a {type(key).__name__.lstrip('_')}, not an ECDSA {what}; "
                              "make one with `python -m pipeline keygen DIR`")
    if key.curve.name not in CURVES:
        raise SigningKeyError(f"{path}: ECDSA curve {key.curve.name} is not one of "
                              f"{', '.join(CURVES)}")


def _read_key_file(path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():     # keygen writes both halves; `make publish` runs it for .keys
        raise SigningKeyError(f"{path}: no such key file; `python -m pipeline keygen "
                              f"{path.parent}` makes a key pair there ({PRIVATE_KEY}, "
                              f"{PUBLIC_KEY})")
    return path.read_bytes()


def load_private_key(path: str | os.PathLike):
    """The ECDSA private key in PEM file `path`; SigningKeyError if it is not one."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization as ser

    path = Path(path)
    data = _read_key_file(path)
    try:
        key = ser.load_pem_private_key(data, password=None)
    except TypeError:          # cryptography: "Password was not given but private key is encrypted"
        raise SigningKeyError(f"{path}: an encrypted private key; give an unencrypted one "
                              "(keep it mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path}: not a PEM private key ({first_line(exc)})") from None
    _check_curve(key, path, "private key")
    return key


def load_public_key(path: str | os.PathLike):
    """The ECDSA public key in PEM file `path`; SigningKeyError if it is not one."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization as ser

    path = Path(path)
    data = _read_key_file(path)
    try:
        key = ser.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path}: not a PEM public key ({first_line(exc)})") from None
    _check_curve(key, path, "public key")
    return key


def fingerprint(key) -> str:
    """`sha256:<hex>` of a (private or public) key's public half in PEM."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return "sha256:" + hashlib.sha256(_public_pem(public)).hexdigest()


def keygen(folder: str | os.PathLike) -> dict:
    """Write a new P-256 key pair into `folder`: signing.key (mode 0600) and signing.pub.

    Never overwrites: if either file exists, nothing is written. Returns
    {"private": Path, "public": Path, "fingerprint": str}.
    """
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    from ..fsio import ensure_dir

    folder = ensure_dir(folder)
    private, public = folder / PRIVATE_KEY, folder / PUBLIC_KEY
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise SigningKeyError(f"{path}: exists; keygen never overwrites a key (use another "
                                  "folder, or delete the pair yourself)")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    written = []
    try:
        for path, data, mode in [(private, pem, 0o600), (public, _public_pem(key.public_key()),
                                                         0o644)]:
            # O_EXCL: a file created meanwhile is refused, not replaced; the mode is set at
            # creation, so the private key is never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)   # the umask may have cleared bits of 0644
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except FileExistsError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise SigningKeyError(f"{exc.filename}: exists; keygen never overwrites a key") from None
    return {"private": private, "public": public, "fingerprint": fingerprint(key)}


# --- signing and verifying one version folder ---------------------------------------------

def _hashing_config():
    """Every file in the folder but the bundle itself, sha256 per file, no symlinks. Git's
    files are not ignored (model-signing's default): a `.gitignore` added later is refused."""
    from model_signing import hashing
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)


def sign_version(folder: str | os.PathLike, private_key: str | os.PathLike) -> Path:
    """Write `folder/model.sig`, signing every other file in `folder`; return its path.

    The new signature is verified with the key's public half before this returns, so a
    signature that does not verify is never published.
    """
    from model_signing import signing

    folder, private_key = Path(folder), Path(private_key)
    key = load_private_key(private_key)           # one clear line for a bad key
    path = folder / SIGNATURE
    if path.exists():
        raise SignatureError(f"{path}: exists; a signed version is never re-signed")
    try:
        try:
            signing.Config().use_elliptic_key_signer(private_key=private_key) \
                .set_hashing_config(_hashing_config()).sign(folder, path)
        except (ValueError, TypeError) as exc:        # e.g. a symlink in the folder
            raise SignatureError(f"{folder}: cannot sign ({first_line(exc)})") from None
        with tempfile.TemporaryDirectory() as tmp:  # model-signing reads keys from files
            public = Path(tmp) / PUBLIC_KEY
            public.write_bytes(_public_pem(key.public_key()))
            _verify_signature(folder, public)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


# model-signing's manifest differences (verifying.Config._get_manifest_diff), in our words.
_DIFFS = [
    (re.compile(r"Hash mismatch for '(.+?)'"), "{} altered after signing (sha256 differs "
                                                "from the signed digest)"),
    (re.compile(r"Extra files found in model '.*?': (.+)"), "{} not signed (added after signing)"),
    (re.compile(r"Missing files in model '.*?': (.+)"), "{} signed but missing (removed)"),
]


def _mismatch(folder: Path, message: str) -> str:
    """One line naming the files that differ from what was signed."""
    try:
        diffs = ast.literal_eval(message.split(":", 1)[1].strip())
        diffs = [diffs] if isinstance(diffs, str) else list(diffs)
    except (ValueError, SyntaxError, IndexError):
        return f"{folder}: {first_line(ValueError(message))}"
    said = []
    for diff in diffs:
        for pattern, text in _DIFFS:
            if m := pattern.match(str(diff)):
                said.append(text.format(m.group(1)))
                break
        else:
            said.append(str(diff))
    return f"{folder}: " + "; ".join(said)


def _check_place(folder: Path, manifest: dict) -> None:
    """The signed manifest names the Triton model and version: refuse a folder moved elsewhere."""
    where = f"{folder.parent.name}/{folder.name}"
    signed = f"{manifest.get('triton_model')}/{manifest.get('version')}"
    if where != signed:
        raise SignatureError(f"{folder}: signed as {signed}, but lies at {where} (renamed or "
                             "moved after signing); refused")


def _verify_signature(folder: Path, public_key: Path) -> None:
    """model-signing's check of `folder/model.sig`: the bundle verifies with `public_key`
    and its statement lists exactly the files in `folder` with their sha256."""
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    key = load_public_key(public_key)
    if not folder.is_dir():
        raise SignatureError(f"{folder}: not a version folder")
    bundle = folder / SIGNATURE
    if not bundle.is_file():
        raise SignatureError(f"{bundle}: missing; this version is not signed (published with "
                             "--unsigned, or the signature was removed)")
    config = verifying.Config().use_elliptic_key_verifier(public_key=public_key) \
        .set_hashing_config(_hashing_config())
    try:
        # An old-format bundle makes model-signing print a warning on stdout; keep it quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            config.verify(folder, bundle)
    except json.JSONDecodeError as exc:
        raise SignatureError(f"{bundle}: not a Sigstore bundle (truncated or damaged: "
                             f"{first_line(exc)})") from None
    except InvalidSignature:
        raise SignatureError(f"{bundle}: signature rejected: it does not verify with "
                             f"{public_key} ({fingerprint(key)}); the statement was altered "
                             "or signed by another key") from None
    except ValueError as exc:
        text = first_line(exc)
        if text.startswith("Signature mismatch"):
            raise SignatureError(_mismatch(folder, str(exc))) from None
        if text.startswith("Key mismatch"):
            raise SignatureError(f"{bundle}: signed by another key, not {public_key} "
                                 f"({fingerprint(key)})") from None
        raise SignatureError(f"{bundle}: signature rejected ({text})") from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:   # a malformed bundle
        raise SignatureError(f"{bundle}: not a valid Sigstore bundle ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None


def verify_version(folder: str | os.PathLike, public_key: str | os.PathLike,
                   served: bool = True) -> dict:
    """Check a version folder's signature, every file's hash and the folder's place, and
    what Triton reads beside it (covered.py). `served=False` (a loader that reads only this
    folder: predict, score) lets a version copied out alone, with no config.pbtxt beside
    it, load; a config or other file that is there is still held to the signature.

    Raises SigningKeyError for a key file that is not a key, SignatureError naming the reason
    the signature is rejected or the files that differ. Returns {"folder", "model", "version",
    "runtime", "triton_model", "files" (every signed file), "fingerprint", "manifest"}.
    """
    folder, public_key = Path(folder), Path(public_key)
    _verify_signature(folder, public_key)
    # Every file now holds the signed bytes, manifest.json included: trust what it says.
    manifest = check_manifest(folder)
    _check_place(folder, manifest)
    from .covered import check_model_folder      # config.pbtxt and what lies beside it
    check_model_folder(folder, manifest, require_config=served)
    return {"folder": folder, "model": manifest.get("model"), "version": manifest.get("version"),
            "runtime": manifest.get("runtime"), "triton_model": manifest.get("triton_model"),
            "files": sorted(p.name for p in folder.iterdir() if p.name != SIGNATURE),
            "fingerprint": fingerprint(load_public_key(public_key)), "manifest": manifest}
