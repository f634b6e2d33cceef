"""Fault suite: damaged artifacts, hostile manifests, a killed stage, a full disk, two runs
at once, unsafe loading. Each case asserts a one-line error (non-zero exit, no traceback)
and that nothing already built changed (every file's bytes, by sha256). A bad value for
every CLI option: tests/test_cli.py; bad input files for predict: tests/test_predict.py."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.fsio import TMP_PREFIX, sha256_file
from pipeline.manifest import MANIFEST, check_manifest, file_entry

from .test_cli import one_line_error

ROOT = Path(__file__).resolve().parent.parent
MODEL = "classifier"   # the cheaper model to rebuild; both share every code path tested here


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """{file name: sha256} of every file in `folder` but the lock (which is never rewritten)."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != ".lock"}


def temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(TMP_PREFIX + "*"))


@pytest.fixture
def art(exported, tmp_path):
    """A private copy of the exported artifact root (both models)."""
    shutil.copytree(exported["out"], tmp_path / "art", ignore=shutil.ignore_patterns(".lock"))
    return tmp_path / "art"


@pytest.fixture
def x_file(art, tmp_path):
    from pipeline.checkpoint import read_config
    spec = read_config(art / MODEL)["recipe"].model
    path = tmp_path / "x.npy"
    x = np.random.default_rng(0).standard_normal((3, 11, spec.input_size))   # (batch, seq, F)
    np.save(path, x.astype(np.float32))
    return path


def predict(art, x_file, *extra):
    return run("predict", "--model", MODEL, "--input", x_file, "--out", art, *extra)


# --- damaged artifacts -------------------------------------------------------------------

def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":     # one flipped byte in the middle: same size, only the hash can tell
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    else:                   # "garble": the first 64 bytes (header, magic) overwritten
        path.write_bytes(bytes(range(7, 71)) + data[64:])


@pytest.mark.parametrize("how", ["truncate", "flip"])
@pytest.mark.parametrize("name", ["weights.safetensors", "config.json", "model.onnx", "model.pt"])
def test_damaged_artifact_is_refused_before_loading(art, x_file, name, how):
    folder = art / MODEL
    damage(folder / name, how)
    before = snapshot(folder)
    result = predict(art, x_file)
    one_line_error(result, name, "size" if how == "truncate" else "sha256 differs")
    assert snapshot(folder) == before


def rehash(folder: Path) -> None:
    """Make the manifest agree with damaged files, so the loaders themselves meet them."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: file_entry(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["truncate", "garble"])
@pytest.mark.parametrize("name,runtime,needle", [
    ("model.onnx", "onnx", "onnxruntime cannot load it"),
    ("model.pt", "torchscript", "torch cannot load it"),
    ("weights.safetensors", "torch", "cannot load weights"),
])
def test_damaged_artifact_with_a_matching_manifest_is_a_clean_error(art, x_file, name,
                                                                    runtime, needle, how):
    """The loaders' own errors, for a file damaged before its manifest was written. (A
    flipped byte in a weight's payload still loads: only the hash check can catch that.)"""
    folder = art / MODEL
    damage(folder / name, how)
    rehash(folder)
    before = snapshot(folder)
    one_line_error(predict(art, x_file, "--runtime", runtime), name, needle)
    assert snapshot(folder) == before


def test_export_refuses_damaged_weights_and_keeps_the_old_artifacts(art):
    folder = art / MODEL
    damage(folder / "weights.safetensors", "truncate")
    before = snapshot(folder)
    one_line_error(run("export", "--model", MODEL, "--out", art), "cannot load weights")
    assert snapshot(folder) == before and not temps(folder)


# --- hostile or damaged manifests --------------------------------------------------------

def edit_manifest(folder: Path, how: str) -> None:
    path = folder / MANIFEST
    text = path.read_text()
    manifest = json.loads(text)
    files = manifest["files"]
    if how == "not json":
        return path.write_text(text[: len(text) // 2])
    if how == "empty":
        return path.write_text("")
    if how == "a list":
        return path.write_text("[]")
    if how == "no files":
        manifest["files"] = {}
    elif how == "dot-dot":      # a real file, with its true hash, in the sibling model folder
        other = folder.parent / "forecaster" / "model.onnx"
        files["../forecaster/model.onnx"] = file_entry(other)
    elif how == "absolute":
        files[str(folder.parent / "forecaster" / "model.onnx")] = file_entry(
            folder.parent / "forecaster" / "model.onnx")
    elif how == "symlink out":  # inside by name, outside by target; hash matches the target
        (folder / "extra.onnx").symlink_to(folder.parent / "forecaster" / "model.onnx")
        files["extra.onnx"] = file_entry(folder / "extra.onnx")
    elif how == "no sha256":
        del files["model.onnx"]["sha256"]
    elif how == "onnx unlisted":
        del files["model.onnx"]
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("how,needle", [
    ("not json", "unreadable"), ("empty", "unreadable"), ("a list", "no 'files' table"),
    ("no files", "no 'files' table"), ("dot-dot", "points outside"),
    ("absolute", "points outside"), ("symlink out", "resolves outside"),
    ("no sha256", "needs 'sha256' and 'size'"), ("onnx unlisted", "does not list model.onnx"),
])
def test_bad_manifest_is_refused(art, x_file, how, needle):
    folder = art / MODEL
    edit_manifest(folder, how)
    before, sibling = snapshot(folder), snapshot(art / "forecaster")
    one_line_error(predict(art, x_file), MANIFEST if how in ("not json", "empty", "a list",
                   "no files", "onnx unlisted") else "manifest entry", needle)
    assert snapshot(folder) == before and snapshot(art / "forecaster") == sibling


def test_missing_model_folder_says_what_to_run(tmp_path, x_file):
    one_line_error(predict(tmp_path, x_file), "run `python -m pipeline export` first")


# --- a stage killed mid-write --------------------------------------------------------------

def subprocess_env() -> dict:
    # One thread per process: two cores shared by several torch processes otherwise spin.
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_export_killed_mid_write_keeps_the_old_artifacts(art):
    """SIGKILL cannot be cleaned up after: the killed writer's temp file stays until the
    next stage run in the folder removes it (fsio.sweep_stale_temps). What must hold at
    once is that every previous artifact is intact and still verifies."""
    from pipeline.train import TrainConfig, main

    folder = art / MODEL
    before = snapshot(folder)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "export", "--model", MODEL,
                             "--out", str(art)], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(p.exists() and p.stat().st_size for p in temps(folder)):  # mid-write
            assert proc.poll() is None, "export ended before it could be killed"
            assert time.monotonic() < deadline, "export wrote no temp file in 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    left = temps(folder)
    assert left, "expected the killed writer's temp file (SIGKILL runs no cleanup)"
    assert snapshot(folder) == {**before, **{p.name: sha256_file(p) for p in left}}
    check_manifest(folder)                             # the old set still verifies

    # The next stage run in the folder (train: the cheaper one) sweeps them under the lock.
    main(TrainConfig(MODEL, art, epochs=1, progress=False), log=lambda s: None)
    assert not temps(folder)


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk("model.onnx")`: fsync of that file's temp fails with ENOSPC, as it does
    when delayed allocation finds no free blocks at flush time."""
    real_fsync = os.fsync

    def arm(victim: str):
        def fsync(fd):
            target = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            if target.startswith(f"{TMP_PREFIX}{victim}."):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    return arm


@pytest.mark.parametrize("stage,victim", [
    # The last file of each set: the others were written too, and must not have landed.
    # (Any earlier file failing is the same path; tests/test_fsio.py covers sets directly.)
    ("train", "config.json"),
    ("export", MANIFEST),
])
def test_full_disk_changes_nothing(art, full_disk, stage, victim):
    folder = art / MODEL
    before = snapshot(folder)
    full_disk(victim)
    args = ["--epochs", "1"] if stage == "train" else []
    one_line_error(run(stage, "--model", MODEL, "--out", art, *args), "No space left on device")
    assert snapshot(folder) == before and not temps(folder)
    check_manifest(folder)


def test_full_disk_while_saving_predictions(art, x_file, full_disk, tmp_path):
    out = tmp_path / "y.npy"
    out.write_bytes(b"previous")
    full_disk("y.npy")
    one_line_error(predict(art, x_file, "--output", out), "No space left on device")
    assert out.read_bytes() == b"previous" and not temps(tmp_path)


# --- two runs at once ---------------------------------------------------------------------

def test_two_concurrent_runs_in_one_folder_leave_a_consistent_set(tmp_path, exported):
    """Two `make all`s (train then export) at once in one folder: model_lock serializes the
    writes, and each export hashes the files it ran on under that lock, so whatever the
    interleaving the last manifest written describes the files on disk."""
    from pipeline.runtimes import RUNTIMES, open_runners

    py, out = sys.executable, tmp_path / "shared"
    make_all = (f"'{py}' -m pipeline train --model {MODEL} --out '{out}' && "
                f"'{py}' -m pipeline export --model {MODEL} --out '{out}'")
    procs = [subprocess.Popen(["sh", "-c", make_all], env=subprocess_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    folder = out / MODEL
    check_manifest(folder)
    assert not temps(folder)
    runners = open_runners(folder, RUNTIMES)
    spec = runners[0].spec
    x = np.random.default_rng(0).standard_normal((4, 9, spec.input_size)).astype(np.float32)
    y = [r.run({spec.input_name: x})[spec.output_name] for r in runners]
    for other in y[1:]:
        np.testing.assert_allclose(other, y[0], **vars(spec.tolerance("cpu")))


# --- safe loading -------------------------------------------------------------------------

def test_no_pickle_based_loading_in_the_package():
    """Weights load through safetensors; a torch.load (pickle) would need weights_only=True."""
    for path in (ROOT / "pipeline").glob("*.py"):
        text = path.read_text()
        for call in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            assert "weights_only=True" in call.group(), f"{path.name}: {call.group()}"
        assert not re.search(r"^\s*(import|from) (c?pickle|dill|joblib)\b", text, re.M), path.name
        assert "allow_pickle=True" not in text, path.name


@pytest.mark.parametrize("runtime,name", [("onnx", "model.onnx"), ("torchscript", "model.pt")])
def test_artifacts_are_opened_only_after_their_hash_check(art, monkeypatch, runtime, name):
    import onnxruntime
    import torch

    from pipeline.errors import IntegrityError
    from pipeline.runtimes import open_runners

    opened = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append(a))
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: opened.append(a))
    damage(art / MODEL / name, "flip")
    with pytest.raises(IntegrityError, match="sha256"):
        open_runners(art / MODEL, (runtime,))
    assert opened == []
