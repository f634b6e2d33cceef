"""Signed releases: keygen, publish --signing-key, verify-release, predict --public-key.

Every refusal is checked the way a consumer meets it: one line, non-zero exit, nothing
loaded. The references are independent of the code under test: hashlib over the files on
disk, the bundle's own DSSE payload read as JSON, and the seed classes for predictions.
"""
import base64
import hashlib
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import PublishError, ServeError, SignatureError, SigningKeyError
from pipeline.manifest import check_manifest, read_manifest, write_manifest
from pipeline.publishing.publish import PublishConfig, main
from pipeline.publishing.release import extract_release
from pipeline.publishing.signing import fingerprint, load_public_key, sign_version, \
    verify_version
from pipeline.publishing.trust import verify_registry
from pipeline.serving.repository import preflight
from tests.seeds import seed_model
from tests.test_cli import one_line_error

MODEL, VERSION = "forecaster", 2
BACKEND_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def published(verified, keys, tmp_path_factory):
    """forecaster published as version 2 (so a rename to 3 is possible), signed with key "a"."""
    out = tmp_path_factory.mktemp("published")
    shutil.copytree(verified / MODEL, out / MODEL, ignore=shutil.ignore_patterns(".lock"))
    result = main(PublishConfig(MODEL, out, version=VERSION, signing_key=keys["a"]["private"]),
                  log=lambda s: None)
    assert result["signed_by"] == keys["a"]["fingerprint"]
    return out


@pytest.fixture
def repo(published, tmp_path):
    """This test's own writable copy of the published registry and its tarball."""
    out = tmp_path / "exported"
    shutil.copytree(published, out, ignore=shutil.ignore_patterns(".lock"))
    for path in out.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)   # published files are read-only
    return out / "model_repository"


def onnx_dir(repo: Path, version: int = VERSION) -> Path:
    return repo / f"{MODEL}_onnx" / str(version)


@pytest.fixture
def no_loading(monkeypatch):
    """Record every artifact a runtime is asked to load."""
    import pipeline.runtimes as runtimes
    loaded = []
    real = runtimes.load_runner
    monkeypatch.setattr(runtimes, "load_runner",
                        lambda *a, **k: loaded.append(a) or real(*a, **k))
    return loaded


# --- the good case ------------------------------------------------------------------------

def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path):
    result = invoke("keygen", tmp_path / "k")
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "signing.key", tmp_path / "k" / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    # The fingerprint is sha256 of the public key file, as `sha256sum signing.pub` says.
    assert f"sha256:{sha(public)}" in result.output
    assert fingerprint(load_public_key(public)) == f"sha256:{sha(public)}"


@pytest.mark.parametrize("existing", ["signing.key", "signing.pub"])
def test_keygen_never_overwrites(tmp_path, existing):
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / existing).write_text("precious")
    one_line_error(invoke("keygen", folder), existing, "never overwrites")
    assert [p.name for p in folder.iterdir()] == [existing]
    assert (folder / existing).read_text() == "precious"


def test_signature_is_a_bundle_over_every_file(published, keys):
    """The DSSE payload, read as plain JSON: an in-toto statement listing each file's sha256."""
    folder = onnx_dir(published / "model_repository")
    bundle = json.loads((folder / "model.sig").read_text())
    assert bundle["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == \
        keys["a"]["fingerprint"].removeprefix("sha256:")
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["name"] == str(VERSION)   # staged under its own number
    assert {r["name"]: r["digest"] for r in statement["predicate"]["resources"]} == \
        {p.name: sha(p) for p in folder.iterdir() if p.name != "model.sig"}
    assert stat.S_IMODE((folder / "model.sig").stat().st_mode) == 0o444


def test_model_card_names_the_signing_key(published, keys):
    for runtime in ("onnx", "torchscript"):
        card = (published / "model_repository" / f"{MODEL}_{runtime}" / str(VERSION) /
                "README.md").read_text()
        assert "**Signed**" in card and keys["a"]["fingerprint"] in card
        assert f"sha256:{sha(keys['a']['public'])}" in card


def test_sign_tarball_extract_elsewhere_verify(published, keys, tmp_path):
    tarball = published / f"{MODEL}-{VERSION}.tar.gz"
    with tarfile.open(tarball) as tar:
        assert f"{MODEL}_onnx/{VERSION}/model.sig" in tar.getnames()
    pub = keys["a"]["public"]
    # The tarball itself, unpacked into a temporary folder by verify-release.
    result = invoke("verify-release", tarball, "--public-key", pub)
    assert result.exit_code == 0, result.output
    assert result.output.count("signature OK") == 4   # onnx, torchscript and their stream models
    # Unpacked elsewhere by hand, as a consumer installs it: the registry, one model folder,
    # one version folder.
    elsewhere = tmp_path / "elsewhere"
    extract_release(tarball, elsewhere)
    for path, count in [(elsewhere, 4), (elsewhere / f"{MODEL}_torchscript", 1),
                        (elsewhere / f"{MODEL}_onnx" / str(VERSION), 1)]:
        result = invoke("verify-release", path, "--public-key", pub)
        assert result.exit_code == 0, result.output
        assert result.output.count("signature OK") == count, result.output
    results = verify_registry(elsewhere, pub)        # what serve's pre-flight check calls
    assert sorted((r["triton_model"], r["version"]) for r in results) == \
        [(f"{MODEL}_{rt}", VERSION) for rt in ("onnx", "stream_onnx", "stream_torchscript",
                                               "torchscript")]
    with pytest.raises(SignatureError, match="no published version of classifier"):
        verify_registry(elsewhere, pub, model="classifier")


def test_verify_registry_finds_nothing_to_verify(tmp_path, keys):
    with pytest.raises(SignatureError, match="no published version"):
        verify_registry(tmp_path, keys["a"]["public"])


def seed_outputs(verified, x):
    """The seed document's class with the trained weights: the independent reference."""
    from safetensors.torch import load_file

    from pipeline.checkpoint import read_config
    model = seed_model(read_config(verified / MODEL)["recipe"].model)
    model.load_state_dict(load_file(verified / MODEL / "weights.safetensors"))
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_predict_on_a_verified_version_matches_the_seed(published, verified, keys, tmp_path,
                                                        runtime, no_loading):
    x = np.random.default_rng(3).standard_normal((4, 17, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    folder = published / "model_repository" / f"{MODEL}_{runtime}" / str(VERSION)
    result = invoke("predict", "--version-dir", folder, "--public-key", keys["a"]["public"],
                    "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), seed_outputs(verified, x),
                               atol=1e-5, rtol=1e-5)
    assert [(r, p.name) for r, _, p, *_ in no_loading] == [(runtime, BACKEND_FILES[runtime])]


# --- what must be refused -----------------------------------------------------------------

def rewrite_manifest(folder: Path) -> None:
    old = read_manifest(folder)
    write_manifest(folder, list(old["files"]), **{k: v for k, v in old.items() if k != "files"})


def backdoor(repo, keys):
    """model.onnx changed and manifest.json rewritten to match: the manifest gate is fooled."""
    import onnx
    folder = onnx_dir(repo)
    proto = onnx.load(folder / "model.onnx")
    proto.doc_string = "backdoored"
    onnx.save(proto, folder / "model.onnx")
    rewrite_manifest(folder)
    check_manifest(folder)            # passes: only the signature can tell
    return folder


def added(repo, keys):
    (onnx_dir(repo) / "notes.txt").write_text("added after signing")
    return onnx_dir(repo)


def added_git_file(repo, keys):
    (onnx_dir(repo) / ".gitignore").write_text("*")   # model-signing ignores these by default
    return onnx_dir(repo)


def removed(repo, keys):
    (onnx_dir(repo) / "verification.json").unlink()
    return onnx_dir(repo)


def signature_missing(repo, keys):
    (onnx_dir(repo) / "model.sig").unlink()
    return onnx_dir(repo)


def signature_truncated(repo, keys):
    path = onnx_dir(repo) / "model.sig"
    path.write_bytes(path.read_bytes()[:200])
    return onnx_dir(repo)


def resigned_by_another_key(repo, keys):
    """The backdoor, re-signed by whoever made it: a valid signature, by the wrong key."""
    folder = backdoor(repo, keys)
    (folder / "model.sig").unlink()
    sign_version(folder, keys["b"]["private"])
    return folder


def another_key_without_hint(repo, keys):
    """As above with the bundle's key hint erased, so the signature check itself must fail."""
    folder = resigned_by_another_key(repo, keys)
    bundle = json.loads((folder / "model.sig").read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = ""
    (folder / "model.sig").write_text(json.dumps(bundle))
    return folder


def statement_edited(repo, keys):
    """The backdoor with the signed statement's digests edited to match it, signature kept."""
    folder = backdoor(repo, keys)
    bundle = json.loads((folder / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for resource in statement["predicate"]["resources"]:
        resource["digest"] = sha(folder / resource["name"])
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (folder / "model.sig").write_text(json.dumps(bundle))
    return folder


def renamed(repo, keys):
    folder = onnx_dir(repo)
    folder.rename(onnx_dir(repo, VERSION + 1))
    return onnx_dir(repo, VERSION + 1)


def moved_to_another_model(repo, keys):
    target = repo / "classifier_onnx" / str(VERSION)
    target.parent.mkdir()
    onnx_dir(repo).rename(target)
    return target


def edit_config(repo, old, new):
    """config.pbtxt beside the version folder edited (what Triton reads; issue 25, row 3)."""
    path = onnx_dir(repo).parent / "config.pbtxt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return onnx_dir(repo)


def config_dims(repo, keys):
    return edit_config(repo, "dims: [ -1, 10 ]", "dims: [ -1, 11 ]")


def config_max_batch_size(repo, keys):
    return edit_config(repo, "max_batch_size: 64", "max_batch_size: 4096")


def config_model_filename(repo, keys):
    return edit_config(repo, 'default_model_filename: "model.onnx"',
                       'default_model_filename: "README.md"')


def added_beside_config(repo, keys):
    (onnx_dir(repo).parent / "notes.txt").write_text("added beside config.pbtxt")
    return onnx_dir(repo)


BESIDE = (config_dims, config_max_batch_size, config_model_filename, added_beside_config)

REFUSED = [  # (tamper, needles of the one-line error)
    (config_dims, ["config.pbtxt: altered after signing"]),
    (config_max_batch_size, ["config.pbtxt: altered after signing"]),
    (config_model_filename, ["config.pbtxt: altered after signing"]),
    (added_beside_config, ["notes.txt not signed"]),
    (backdoor, ["model.onnx altered after signing", "manifest.json altered"]),
    (added, ["notes.txt not signed (added after signing)"]),
    (added_git_file, [".gitignore not signed"]),
    (removed, ["verification.json signed but missing"]),
    (signature_missing, ["model.sig: missing", "not signed"]),
    (signature_truncated, ["model.sig: not a Sigstore bundle", "truncated"]),
    (resigned_by_another_key, ["model.sig: signed by another key"]),
    (another_key_without_hint, ["signature rejected"]),
    (statement_edited, ["signature rejected"]),
    (renamed, [f"signed as {MODEL}_onnx/{VERSION}, but lies at {MODEL}_onnx/{VERSION + 1}"]),
    (moved_to_another_model, [f"signed as {MODEL}_onnx/{VERSION}", "lies at classifier_onnx"]),
]


@pytest.mark.parametrize("tamper,needles", REFUSED, ids=[t.__name__ for t, _ in REFUSED])
def test_tampering_is_refused_and_nothing_is_loaded(repo, keys, tmp_path, tamper, needles,
                                                    no_loading):
    folder = tamper(repo, keys)
    pub = keys["a"]["public"]
    for path in (folder, folder.parent, repo):        # version, Triton model, registry
        one_line_error(invoke("verify-release", path, "--public-key", pub), *needles)
    with pytest.raises(SignatureError):
        verify_registry(repo, pub)
    with pytest.raises(ServeError) as refused:
        preflight(repo, pub)                          # serve's pre-flight
    if tamper in BESIDE:                              # (others: its manifest check may speak first)
        assert needles[0] in str(refused.value)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 10), np.float32))
    one_line_error(invoke("predict", "--version-dir", folder, "--public-key", pub,
                          "--input", tmp_path / "x.npy"), *needles)
    assert no_loading == []


def test_tampered_tarball_is_refused(published, keys, tmp_path):
    """A release tarball re-packed with a backdoored model.onnx and a matching manifest."""
    unpacked = tmp_path / "unpacked"
    extract_release(published / f"{MODEL}-{VERSION}.tar.gz", unpacked)
    for path in unpacked.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    backdoor(unpacked, keys)
    evil = tmp_path / f"{MODEL}-{VERSION}.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for path in sorted(unpacked.iterdir()):
            tar.add(path, arcname=path.name)
    one_line_error(invoke("verify-release", evil, "--public-key", keys["a"]["public"]),
                   "model.onnx altered after signing")


@pytest.mark.parametrize("content", [b"", b"plain text", b"\x1f\x8b\x08\x00garbage"],
                         ids=["empty", "text", "bad-gzip"])
def test_a_file_that_is_not_a_tarball_is_refused(keys, tmp_path, content):
    path = tmp_path / "forecaster-1.tar.gz"
    path.write_bytes(content)
    one_line_error(invoke("verify-release", path, "--public-key", keys["a"]["public"]),
                   "not a release tarball")


@pytest.mark.parametrize("content", ["not a key\n", "private"], ids=["garbage", "private-key"])
def test_a_public_key_that_is_not_one_is_refused(published, keys, tmp_path, content,
                                                 no_loading):
    bad = tmp_path / "bad.pub"
    bad.write_bytes(keys["a"]["private"].read_bytes() if content == "private" else content.encode())
    folder = onnx_dir(published / "model_repository")
    one_line_error(invoke("verify-release", folder, "--public-key", bad), "bad.pub",
                   "not a PEM public key")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 10), np.float32))
    one_line_error(invoke("predict", "--version-dir", folder, "--public-key", bad,
                          "--input", tmp_path / "x.npy"), "not a PEM public key")
    assert no_loading == []
    with pytest.raises(SigningKeyError):
        verify_version(folder, bad)


def test_predict_on_a_version_needs_a_public_key(published, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 10), np.float32))
    one_line_error(invoke("predict", "--version-dir", onnx_dir(published / "model_repository"),
                          "--input", tmp_path / "x.npy"), "--public-key")


# --- publish: a key, or --unsigned --------------------------------------------------------

def test_publish_without_a_key_is_refused_unless_asked_for(verified, keys, tmp_path):
    out = tmp_path / "exported"
    shutil.copytree(verified / MODEL, out / MODEL, ignore=shutil.ignore_patterns(".lock"))
    one_line_error(invoke("publish", "--model", MODEL, "--out", out), "--signing-key",
                   "--unsigned")
    one_line_error(invoke("publish", "--model", MODEL, "--out", out, "--unsigned",
                          "--signing-key", keys["a"]["private"]), "contradict")
    bad = tmp_path / "bad.key"
    bad.write_text("nope")
    one_line_error(invoke("publish", "--model", MODEL, "--out", out, "--signing-key", bad),
                   "bad.key", "not a PEM private key")
    one_line_error(invoke("publish", "--model", MODEL, "--out", out,
                          "--signing-key", keys["a"]["public"]), "not a PEM private key")
    assert not (out / "model_repository").exists()
    result = invoke("publish", "--model", MODEL, "--out", out, "--unsigned")
    assert result.exit_code == 0 and "UNSIGNED" in result.output, result.output
    folder = out / "model_repository" / f"{MODEL}_onnx" / "1"
    assert not (folder / "model.sig").exists()
    assert "**Not signed**" in (folder / "README.md").read_text()
    one_line_error(invoke("verify-release", folder, "--public-key", keys["a"]["public"]),
                   "model.sig: missing")
    with pytest.raises(PublishError, match="contradict"):
        main(PublishConfig(MODEL, out, signing_key=keys["a"]["private"], unsigned=True))


def test_signing_refuses_a_folder_with_a_symlink(tmp_path, keys):
    folder = tmp_path / "1"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    os.symlink("/etc/hostname", folder / "link")
    with pytest.raises(SignatureError, match="cannot sign"):
        sign_version(folder, keys["a"]["private"])
    assert not (folder / "model.sig").exists()

