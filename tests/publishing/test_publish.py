"""Publishing: gates, Triton layout and configs, model card, immutability, races, tarballs."""
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import IntegrityError, PublishError
from pipeline.manifest import check_manifest, read_manifest, write_manifest
from pipeline.publishing.covered import CONFIG_KEY, check_model_folder
from pipeline.publishing.publish import PublishConfig, commit, main
from pipeline.publishing.versions import published_versions
from pipeline.publishing.release import extract_release
from pipeline.specs import MODEL_NAMES
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify_main
from tests.test_cli import one_line_error

MODEL = "forecaster"
ROOT = Path(__file__).resolve().parents[2]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes): a snapshot to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def key_of(out: Path) -> Path:
    """The publisher's private key of a `build` (keygen'd beside it, see the fixture)."""
    return out.parent / "keys" / "signing.key"


def publish(out: Path, model: str = MODEL, **kwargs) -> dict:
    kwargs.setdefault("signing_key", None if kwargs.get("unsigned") else key_of(out))
    return main(PublishConfig(model, out, **kwargs), log=lambda s: None)


def rebuild(out: Path, model: str = MODEL, note: str = "rebuilt") -> None:
    """Another build of the same model: same weights, different model.onnx bytes (doc string),
    re-manifested and verified again, as a fresh export + verify would leave it."""
    import onnx

    model_dir = out / model
    proto = onnx.load(model_dir / "model.onnx")
    proto.doc_string = note
    onnx.save(proto, model_dir / "model.onnx")
    old = read_manifest(model_dir)
    write_manifest(model_dir, list(old["files"]), **{k: v for k, v in old.items() if k != "files"})
    verify_main(VerifyConfig(model, out, device="cpu"), log=lambda s: None)


@pytest.fixture
def build(verified, tmp_path):
    """This test's own copy of `verified` (tmp/exported), free to tamper with, and a key pair
    to sign with in tmp/keys (`key_of`)."""
    from pipeline.publishing.signing import keygen

    out = tmp_path / "exported"
    shutil.copytree(verified, out, ignore=shutil.ignore_patterns(".lock"))
    keygen(tmp_path / "keys")
    return out


# --- 3. Triton layout and configs ---------------------------------------------------------

def onnx_io(path: Path) -> list[tuple[str, int, list[int]]]:
    """(name, elem type, dims with -1 for symbolic) of the ONNX graph's inputs then outputs."""
    import onnx

    graph = onnx.load(path).graph
    return [(v.name, v.type.tensor_type.elem_type,
             [-1 if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in [*graph.input, *graph.output]]


def test_configs_parse_as_triton_model_config(build):
    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    repo = build / "model_repository"
    for name in MODEL_NAMES:
        publish(build, name)
        graph = onnx_io(build / name / "model.onnx")   # the reference: the exported graph
        assert [t for _, t, _ in graph] == [onnx.TensorProto.FLOAT] * 2
        for runtime, platform, backend in [("onnx", "onnxruntime_onnx", "onnxruntime"),
                                           ("torchscript", "pytorch_libtorch", "pytorch")]:
            text = (repo / f"{name}_{runtime}" / "config.pbtxt").read_text()
            config = text_format.Parse(text, pb.ModelConfig())
            assert (config.name, config.platform, config.backend) == \
                (f"{name}_{runtime}", platform, backend)
            # Dynamic batching: Triton owns the batch axis, so dims are the graph's without it.
            assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
            tensors = [*config.input, *config.output]
            assert [t.data_type for t in tensors] == [pb.TYPE_FP32, pb.TYPE_FP32]
            assert [[-1] + list(t.dims) for t in tensors] == [d for _, _, d in graph]
            assert [list(t.dims)[:1] for t in config.input] == [[-1]]   # seq free
            # both backends: the graph's names (the pytorch backend maps them in config order)
            assert [t.name for t in tensors] == [n for n, _, _ in graph]


def test_version_folders_match_their_manifests_and_the_build(build):
    result = publish(build)
    assert result["published"] and result["version"] == 1
    repo = build / "model_repository"
    for runtime, artifact in [("onnx", "model.onnx"), ("torchscript", "model.pt")]:
        folder = repo / f"{MODEL}_{runtime}" / "1"
        assert sorted(p.name for p in folder.iterdir()) == \
            sorted([artifact, "manifest.json", "verification.json", "README.md", "model.sig"])
        check_manifest(folder)
        listed = json.loads((folder / "manifest.json").read_text())["files"]
        assert {n: e["sha256"] for n, e in listed.items()} == \
            {p.name: sha(p) for p in folder.iterdir() if p.name not in ("manifest.json",
                                                                       "model.sig")}
        assert sha(folder / artifact) == sha(build / MODEL / artifact)
        assert (folder / "verification.json").read_bytes() == \
            (build / MODEL / "verification.json").read_bytes()
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == \
        [f"{MODEL}_{r}" for r in ("onnx", "stream_onnx", "stream_torchscript", "torchscript")]
    # nothing else Triton would take for a model
    assert result["tarball"] == build / f"{MODEL}-1.tar.gz"


def test_published_runtimes_serve_any_batch_and_length(build):
    import onnxruntime as ort
    import torch

    publish(build)
    repo = build / "model_repository"
    x = np.random.default_rng(0).standard_normal((5, 23, 10)).astype(np.float32)
    session = ort.InferenceSession(str(repo / f"{MODEL}_onnx/1/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (y_onnx,) = session.run(None, {session.get_inputs()[0].name: x})
    y_ts = torch.jit.load(str(repo / f"{MODEL}_torchscript/1/model.pt")).eval()(
        torch.from_numpy(x)).detach().numpy()
    assert y_onnx.shape == y_ts.shape == (5, 1)
    np.testing.assert_allclose(y_onnx, y_ts, atol=1e-5, rtol=1e-5)


# --- 4. model card ------------------------------------------------------------------------

def test_model_card_describes_the_model_and_its_loading_code_runs(build, monkeypatch):
    publish(build)
    repo = build / "model_repository"
    metrics = json.loads((build / MODEL / "config.json").read_text())["metrics"]
    for runtime in ("onnx", "torchscript"):
        card = (repo / f"{MODEL}_{runtime}" / "1" / "README.md").read_text()
        for needle in ["sinusoid", "(batch, seq, 10)", "(batch, 1)", "`input`", "`output`",
                       f"{metrics['test']:.4f}", f"{metrics['baseline']:.4f}",
                       metrics["baseline_kind"], "**passed**", "onnxruntime", "torch.jit.load"]:
            assert needle in card, (runtime, needle)
        code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
        monkeypatch.chdir(repo)
        scope = {}
        exec(code, scope)   # the card's own snippet, run from the repository root
        assert scope["y"].shape == (4, 1)


# --- 2. gates -----------------------------------------------------------------------------

def refused(out: Path, *needles, error=PublishError, **kwargs):
    with pytest.raises(error) as info:
        publish(out, **kwargs)
    for needle in needles:
        assert needle in str(info.value)
    assert not (out / "model_repository" / f"{MODEL}_onnx").exists()
    assert not list(out.glob("*.tar.gz"))


def test_missing_verification_refused(build):
    (build / MODEL / "verification.json").unlink()
    refused(build, "verification.json", "not found", "verify")


def test_failing_verification_refused(build):
    path = build / MODEL / "verification.json"
    report = json.loads(path.read_text())
    report["passed"] = False
    report["rows"][0].update(passed=False, reason="|error| 0.5 > 2e-05 at index (0, 0)")
    path.write_text(json.dumps(report))
    refused(build, "verification failed", "|error| 0.5")


def test_tampered_artifact_refused_by_the_manifest_check(build):
    path = build / MODEL / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    refused(build, "model.onnx", "sha256", error=IntegrityError)


def test_build_changed_after_verification_refused(build):
    """Re-exported (manifest consistent) but not re-verified: the report judged other bytes."""
    path = build / MODEL / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    old = read_manifest(build / MODEL)
    write_manifest(build / MODEL, list(old["files"]), **{k: v for k, v in old.items() if k != "files"})
    refused(build, "judged another model.onnx", "verify again")


def test_verification_of_another_model_refused(build):
    shutil.copy(build / "classifier" / "verification.json", build / MODEL / "verification.json")
    refused(build, "classifier")


# --- 1, 5. versions and immutability ------------------------------------------------------

def test_next_version_and_noop_republish(build):
    assert publish(build)["version"] == 1
    before = tree(build)
    again = publish(build)
    assert (again["version"], again["published"]) == (1, False)
    assert tree(build) == before   # not a byte changed, tarball included
    rebuild(build)
    assert (publish(build)["version"], publish(build)["version"]) == (2, 2)
    assert sorted(published_versions(build / "model_repository", MODEL)) == [1, 2]
    verify_main(VerifyConfig(MODEL, build, device="cpu"), log=lambda s: None)  # re-verifying the same bytes is not a new release
    assert publish(build)["published"] is False


def test_explicit_version_and_conflicting_content_refused(build):
    assert publish(build, version=5)["version"] == 5
    published = tree(build / "model_repository")
    rebuild(build)
    with pytest.raises(PublishError, match="version 5 is already published with other artifacts"):
        publish(build, version=5)
    assert tree(build / "model_repository") == published
    assert publish(build)["version"] == 6


def test_changed_config_refused(build):
    publish(build)
    path = build / "model_repository" / f"{MODEL}_onnx" / "config.pbtxt"
    path.write_text(path.read_text().replace("max_batch_size: 64", "max_batch_size: 8"))
    rebuild(build)
    with pytest.raises(PublishError, match="config.pbtxt: differs"):
        publish(build)
    assert sorted(published_versions(build / "model_repository", MODEL)) == [1]


def test_config_with_the_old_torchscript_names_is_kept(build):
    """A repository published before issue 24 has TorchScript configs naming tensors
    `input__0` / `output__0` (`input__0..2` for stream models): the next version goes in
    beside them, those configs untouched (a config never changes under published versions)."""
    publish(build)
    legacy = {}
    for runtime in ("torchscript", "stream_torchscript"):
        path = build / "model_repository" / f"{MODEL}_{runtime}" / "config.pbtxt"
        text = path.read_text()
        for i, name in enumerate(("input", "lengths", "h_in")):
            text = text.replace(f'name: "{name}"\n', f'name: "input__{i}"\n')
        for i, name in enumerate(("output", "h_out")):
            text = text.replace(f'name: "{name}"\n', f'name: "output__{i}"\n')
        assert 'name: "input__0"' in text and 'name: "output__0"' in text
        path.write_text(text)
        legacy[path] = text
    rebuild(build)
    assert publish(build)["version"] == 2
    assert {path: path.read_text() for path in legacy} == legacy
    # what the signature covers (issue 25) is the config kept on disk: version 2 records its
    # digest, and a version from before digests were recorded is held to the legacy text
    for path in legacy:
        for version in ("1", "2"):
            release = json.loads((path.parent / version / "manifest.json").read_text())
            if version == "1":
                release.pop(CONFIG_KEY)
            check_model_folder(path.parent / version, release)


def test_damaged_published_version_is_reported(build):
    publish(build)
    card = build / "model_repository" / f"{MODEL}_onnx" / "1" / "README.md"
    card.chmod(0o644)
    card.write_text("edited by hand")
    with pytest.raises(IntegrityError, match="README.md"):
        publish(build)


def test_interrupted_publish_leaves_nothing_visible(build, monkeypatch):
    import pipeline.publishing.publish as pub

    def crash(staging, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(pub, "commit", crash)
    with pytest.raises(KeyboardInterrupt):
        publish(build)
    repo = build / "model_repository"
    assert published_versions(repo, MODEL) == {}
    assert not list(repo.rglob(".staging-*"))
    monkeypatch.undo()
    (repo / f"{MODEL}_onnx" / ".staging-killed").mkdir()   # as `kill -9` would leave it
    assert publish(build)["version"] == 1
    assert not list(repo.rglob(".staging-*"))


def test_rename_loser_gets_a_clear_error(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "model.onnx").write_bytes(b"winner")
    staging = tmp_path / ".staging-x"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"loser")
    with pytest.raises(PublishError, match="version 7 was published by another process"):
        commit(staging, tmp_path / "7")
    assert (tmp_path / "7" / "model.onnx").read_bytes() == b"winner"
    assert not staging.exists()


def race(registry: Path, *outs: Path) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline", "publish", "--model", MODEL,
           "--registry", str(registry), "--version", "7"]
    procs = [subprocess.Popen([*cmd, "--out", str(out), "--signing-key", str(key_of(out))],
                              env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for out in outs]
    return [subprocess.CompletedProcess(p.args, p.wait(60), *p.communicate()) for p in procs]


def test_concurrent_publishes_of_one_version_exactly_one_wins(build, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(build, other, ignore=shutil.ignore_patterns(".lock"))
    rebuild(other)
    registry = tmp_path / "registry"
    results = race(registry, build, other)
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(r.stdout, r.stderr) for r in results]
    assert "published version 7" in winners[0].stdout
    error = losers[0].stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("Error:") and "version 7" in error[0]
    winner = build if winners[0] is results[0] else other
    for runtime, artifact in [("onnx", "model.onnx"), ("torchscript", "model.pt")]:
        folder = registry / f"{MODEL}_{runtime}" / "7"
        check_manifest(folder)
        assert sha(folder / artifact) == sha(winner / MODEL / artifact)
    assert not list(registry.rglob(".staging-*"))


def test_concurrent_publishes_of_the_same_build_publish_it_once(build, tmp_path):
    registry = tmp_path / "registry"
    results = race(registry, build, build)
    outs = sorted(r.stdout for r in results)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert "published version 7" in outs[0] and "unchanged, version 7 already holds" in outs[1]
    assert sorted(published_versions(registry, MODEL)) == [7]


# --- 4. release tarball and safe unpacking ------------------------------------------------

def test_tarball_round_trips_through_the_safe_extractor(build, tmp_path):
    result = publish(build)
    repo = build / "model_repository"
    unpacked = tmp_path / "unpacked"
    written = extract_release(result["tarball"], unpacked)
    assert len(written) == 24   # 4 configs + 4 x 5 files (plain and stream; model.sig included)
    assert tree(unpacked) == {k: v for k, v in tree(repo).items()}
    for runtime in ("onnx", "torchscript", "stream_onnx", "stream_torchscript"):
        check_manifest(unpacked / f"{MODEL}_{runtime}" / "1")
    assert extract_release(result["tarball"], unpacked) == []   # identical files: untouched
    assert extract_release(result["tarball"], repo) == []


def craft(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            data = b"pwned" if info.isfile() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("evil", [
    member("/tmp/evil"), member("../evil"), member("forecaster_onnx/../../evil"),
    member("forecaster_onnx/1/model.onnx", tarfile.SYMTYPE, "/etc/passwd"),
    member("forecaster_onnx/link", tarfile.SYMTYPE, "../../outside"),
    member("forecaster_onnx/hard", tarfile.LNKTYPE, "../outside"),
    member("dev", tarfile.CHRTYPE), member("fifo", tarfile.FIFOTYPE),
], ids=["absolute", "dotdot", "nested-dotdot", "symlink-abs", "symlink-out", "hardlink", "device",
        "fifo"])
def test_malicious_tar_refused_and_nothing_written(tmp_path, evil):
    tar = craft(tmp_path, member("forecaster_onnx/config.pbtxt"), evil)
    dest = tmp_path / "dest"
    with pytest.raises(PublishError, match="member"):
        extract_release(tar, dest)
    assert list(dest.iterdir()) == []   # checked before anything is written
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_tar_through_an_existing_link_or_over_other_content_refused(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir(), outside.mkdir()
    (dest / "forecaster_onnx").symlink_to(outside)
    with pytest.raises(PublishError, match="resolves outside"):
        extract_release(craft(tmp_path, member("forecaster_onnx/config.pbtxt")), dest)
    assert list(outside.iterdir()) == []
    (dest / "forecaster_onnx").unlink()
    (dest / "forecaster_onnx").mkdir()
    (dest / "forecaster_onnx" / "config.pbtxt").write_text("published before")
    with pytest.raises(PublishError, match="exists with other content"):
        extract_release(craft(tmp_path, member("forecaster_onnx/config.pbtxt")), dest)
    assert (dest / "forecaster_onnx" / "config.pbtxt").read_text() == "published before"


# --- 1, 2. command line -------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(cli, ["publish", *map(str, args)])


def test_cli_publishes_both_models_then_adds_nothing(build):
    first = run("--out", build, "--signing-key", key_of(build))
    assert first.exit_code == 0, first.output
    assert first.output.count("published version 1 (signed by sha256:") == 2
    assert (build / "model_repository" / "classifier_torchscript" / "1" / "model.pt").is_file()
    before = tree(build)
    second = run("--out", build, "--signing-key", key_of(build))
    assert second.exit_code == 0 and second.output.count("version 1 already holds") == 2
    assert tree(build) == before


def test_cli_errors_are_one_line(build, tmp_path):
    key = ("--signing-key", key_of(build))
    (build / MODEL / "verification.json").unlink()
    one_line_error(run("--model", MODEL, "--out", build, *key), "verification.json", "verify")
    one_line_error(run("--model", MODEL, "--out", tmp_path / "nothing", *key),
                   "no such model folder")
    one_line_error(run("--version", "0", "--out", build), "--version")
    assert run("--model", "classifier", "--out", build, "--version", "3", *key).exit_code == 0
    rebuild(build, "classifier")
    one_line_error(run("--model", "classifier", "--out", build, "--version", "3", *key),
                   "version 3", "already published")


def test_publish_reads_the_checkpoint_config_name_without_torch():
    from pipeline import checkpoint
    from pipeline.publishing import publish as pub
    assert pub.CONFIG == checkpoint.CONFIG


def test_a_release_beside_the_repository_is_never_overwritten(build):
    """Two repositories in one folder share the release tarballs beside them (and a version
    removed from a repository leaves its tarball): a version released there is taken. The
    next one is chosen, and --version naming it is one line with nothing written (it used
    to write every version folder, then fail on the tarball)."""
    publish(build)
    released = (build / f"{MODEL}-1.tar.gz").read_bytes()
    sibling = build / "staging_repository"
    with pytest.raises(PublishError, match=r"version 1 is released beside this repository "
                                           rf"\({MODEL}-1.tar.gz\) but not in it; .* as 2\)$"):
        publish(build, registry=sibling, version=1)
    assert not sibling.exists() or not any(sibling.rglob("manifest.json"))
    said = []
    second = main(PublishConfig(MODEL, build, registry=sibling, signing_key=key_of(build)),
                  log=said.append)
    assert second["version"] == 2 and second["tarball"] == build / f"{MODEL}-2.tar.gz"
    assert sorted(published_versions(sibling, MODEL)) == [2]
    assert (build / f"{MODEL}-1.tar.gz").read_bytes() == released
    assert any(f"{MODEL}-1.tar.gz beside the repository is another release" in s for s in said)


def test_a_runtime_verify_did_not_run_is_not_published(build):
    """verify --runtime onnx passes, but model.pt was never checked by it: publishing it
    (every version holds both) is one line naming what verify skipped, nothing written."""
    verify_main(VerifyConfig(MODEL, build, device="cpu", shapes=((1, 3),), runtimes=("onnx",)),
                log=lambda s: None)
    with pytest.raises(PublishError, match=r"verification.json: verify did not check "
                                           r"torchscript, stream_torchscript \(it ran onnx\); "
                                           r"run verify with --runtime onnx --runtime "
                                           r"torchscript \(its default\)"):
        publish(build)
    assert not (build / "model_repository").exists() or \
        not any((build / "model_repository").rglob("manifest.json"))
