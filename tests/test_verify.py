import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import IntegrityError, PipelineError, VerificationError
from pipeline.manifest import MANIFEST, file_entry
from pipeline.specs import MODEL_NAMES
from pipeline.verify import VerifyConfig, default_shapes, main

from .perturb import noisy_onnx_weights
from .test_cli import one_line_error


@pytest.fixture
def copy(exported, tmp_path):
    for name in MODEL_NAMES:
        shutil.copytree(exported["out"] / name, tmp_path / name)
    return tmp_path


def rewrite_manifest(folder, **changes):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"].update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def forbid_loading(monkeypatch):
    """Make any artifact load fail the test: integrity must stop things before."""
    import onnxruntime
    import torch

    def boom(*args, **kwargs):
        raise AssertionError("an artifact was loaded before its hash was checked")
    monkeypatch.setattr(torch.jit, "load", boom)
    monkeypatch.setattr(onnxruntime, "InferenceSession", boom)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_default_matrix_passes_and_is_recorded(copy, name):
    report = main(VerifyConfig(name, copy, "cpu"), log=lambda s: None)
    saved = json.loads((copy / name / "verification.json").read_text())
    assert saved["passed"] is report["passed"] is True
    shapes = {(r["batch"], r["seq"]) for r in saved["rows"] if "check" not in r}   # not stream
    assert shapes == set(default_shapes(report_spec(copy, name)))
    assert {b for b, _ in shapes} == {1, 2, 64} and {s for _, s in shapes} == {1, 7, 70}
    assert {r["scale"] for r in saved["rows"]} == {1.0, 10.0}
    assert {r["runtime"] for r in saved["rows"]} == {"torchscript", "onnx", "stream_torchscript",
                                                     "stream_onnx"}
    assert {r["provider"] for r in saved["rows"] if r["runtime"] == "onnx"} == {"CPUExecutionProvider"}
    for file in ("model.onnx", "model.pt", "weights.safetensors"):
        assert saved["artifacts"][file] == file_entry(copy / name / file)
    assert {"atol", "rtol"} == set(saved["tolerance"]) and "onnxruntime" in saved["versions"]


def report_spec(out, name):
    from pipeline.checkpoint import read_config
    return read_config(out / name)["recipe"].model


def test_perturbed_onnx_weights_fail(copy):
    """An export bug: every ONNX weight off by ~1e-3. Hashes are re-signed, so only the
    numbers can give it away."""
    folder = copy / "forecaster"
    noisy_onnx_weights(folder / "model.onnx", folder / "model.onnx", np.random.default_rng(0))
    rewrite_manifest(folder, **{"model.onnx": file_entry(folder / "model.onnx")})
    with pytest.raises(VerificationError, match=r"forecaster: \d+ of 84 checks failed; first: onnx") as info:
        main(VerifyConfig("forecaster", copy, "cpu"), log=lambda s: None)
    saved = json.loads((folder / "verification.json").read_text())
    assert saved["passed"] is False and info.value.report["passed"] is False
    assert all(r["passed"] for r in saved["rows"] if r["runtime"] == "torchscript")


@pytest.mark.parametrize("file", ["model.pt", "model.onnx", "weights.safetensors", "config.json"])
def test_flipped_byte_fails_before_loading(copy, monkeypatch, file):
    path = copy / "classifier" / file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    forbid_loading(monkeypatch)
    with pytest.raises(IntegrityError, match=f"{file}: sha256 differs"):
        main(VerifyConfig("classifier", copy, "cpu"), log=lambda s: None)
    assert not (copy / "classifier" / "verification.json").exists()


def test_truncated_and_missing_files(copy, monkeypatch):
    forbid_loading(monkeypatch)
    onnx_path = copy / "classifier" / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match="model.onnx: size"):
        main(VerifyConfig("classifier", copy, "cpu"), log=lambda s: None)
    onnx_path.unlink()
    with pytest.raises(IntegrityError, match="model.onnx: missing"):
        main(VerifyConfig("classifier", copy, "cpu"), log=lambda s: None)


@pytest.mark.parametrize("entry", ["../forecaster/model.onnx", "/etc/passwd", "sub/../../x"])
def test_manifest_pointing_outside_is_refused(copy, monkeypatch, entry):
    rewrite_manifest(copy / "classifier", **{entry: {"sha256": "0" * 64, "size": 1}})
    forbid_loading(monkeypatch)
    with pytest.raises(IntegrityError, match="outside"):
        main(VerifyConfig("classifier", copy, "cpu"), log=lambda s: None)


def test_symlink_out_of_the_folder_is_refused(copy, monkeypatch):
    folder = copy / "classifier"
    outside = copy / "elsewhere.onnx"
    shutil.move(folder / "model.onnx", outside)
    os.symlink(outside, folder / "model.onnx")
    forbid_loading(monkeypatch)
    with pytest.raises(IntegrityError, match="resolves outside"):
        main(VerifyConfig("classifier", copy, "cpu"), log=lambda s: None)


def test_cli_prints_table_and_fails_cleanly(copy):
    result = CliRunner().invoke(cli, ["verify", "--model", "classifier", "--out", str(copy),
                                      "--device", "cpu", "--shapes", "1x1,3x20"])
    assert result.exit_code == 0, result.output
    assert "max abs err" in result.output and "CPUExecutionProvider" in result.output
    # 2 shapes x 2 scales x 2 runtimes, twice (plain and stream ragged), + 2 batches x 3
    # chunkings x 2 runtimes chunked
    assert result.output.count(" pass\n") == 16 + 12
    (copy / "classifier" / "model.pt").write_bytes(b"tampered")
    one_line_error(CliRunner().invoke(cli, ["verify", "--model", "classifier", "--out", str(copy)]),
                   "model.pt")


@pytest.mark.parametrize("shapes", ["1x", "x5", "0x3", "2x-1", "64by500", "1x1,,2x2", ""])
def test_malformed_shapes_are_usage_errors(copy, shapes):
    result = CliRunner().invoke(cli, ["verify", "--out", str(copy), "--shapes", shapes])
    assert result.exit_code == 2 and "--shapes" in result.output and "Traceback" not in result.output


def has_cuda():
    import onnxruntime
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(has_cuda(), reason="CUDA is present: the error path can't be exercised")
def test_device_cuda_without_gpu_is_a_clear_error(copy):
    with pytest.raises(PipelineError, match="no CUDAExecutionProvider"):
        main(VerifyConfig("classifier", copy, "cuda"), log=lambda s: None)
    report = main(VerifyConfig("classifier", copy, "auto", shapes=((1, 3),)), log=lambda s: None)
    assert report["device"] == "cpu"


@pytest.mark.skipif(not has_cuda(), reason="needs onnxruntime-gpu and an NVIDIA GPU "
                    "(CUDAExecutionProvider not available)")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_execution_provider(copy, name):
    report = main(VerifyConfig(name, copy, "cuda"), log=lambda s: None)
    assert report["device"] == "cuda"
    assert {r["provider"] for r in report["rows"] if r["runtime"] == "onnx"} == {"CUDAExecutionProvider"}


def test_runtime_all_records_one_entry_per_runtime(copy):
    result = CliRunner().invoke(cli, ["verify", "--model", "forecaster", "--out", str(copy),
                                      "--device", "cpu", "--shapes", "1x1,5x33",
                                      "--runtime", "all"])
    assert result.exit_code == 0, result.output
    saved = json.loads((copy / "forecaster" / "verification.json").read_text())
    entries = {e["name"]: e for e in saved["runtimes"]}
    assert set(entries) == {"torchscript", "onnx", "openvino", "tract", "onnx-reference"}
    for e in entries.values():
        assert e["passed"] and e["precision"] == "float32" and e["version"]
        assert e["shapes"] == [[1, 1], [5, 33]] and set(e["max_abs_by_shape"]) == {"1x1", "5x33"}
    assert entries["openvino"]["provider"] == "CPU"
    whole = [r for r in saved["rows"] if not r["runtime"].startswith("stream_")]
    assert len(whole) == 20 and all(r["f32_drift"] is not None for r in whole)  # 2x2x5
    # the stream artifact was checked in every runtime too (issue 13's rows)
    assert {r["runtime"] for r in saved["rows"]} - {r["runtime"] for r in whole} == {
        f"stream_{name}" for name in entries}
