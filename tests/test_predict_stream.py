"""`predict --stream`: a stream continued across two calls equals the seed class on the whole
sequence; every bad stream input is one line, never a number."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from pipeline.cli import cli
from pipeline.compare import compare
from pipeline.runtimes import RUNTIMES

from .seeds import seed_model
from .test_cli import one_line_error
from .test_predict import predict, rows, seed_outputs, spec_of


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stream_continued_from_a_saved_state_equals_the_whole(exported, tmp_path, runtime):
    spec = spec_of(exported, "forecaster")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 30, spec.input_size)).astype(np.float32)
    # first call: rows of lengths 10, 4, 12 padded to 12 (garbage past them)
    first = x[:, :12].copy()
    first[0, 10:], first[1, 4:] = 99.0, -99.0
    np.savez(tmp_path / "a.npz", input=first, lengths=np.array([10, 4, 12]))
    result = predict(exported, "forecaster", tmp_path / "a.npz", "--stream", "--runtime", runtime,
                     "--output", str(tmp_path / "a_out.npz"))
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "a_out.npz")
    # second call: each row continues from its h_out with the rest of its 30 steps
    rest = np.zeros((3, 26, spec.input_size), np.float32)
    for i, start in enumerate([10, 4, 12]):
        rest[i, :30 - start] = x[i, start:]
    np.savez(tmp_path / "b.npz", input=rest, lengths=np.array([20, 26, 18]), h_in=saved["h_out"])
    result = predict(exported, "forecaster", tmp_path / "b.npz", "--stream", "--runtime", runtime)
    assert result.exit_code == 0, result.output
    lines = rows(result.output)
    expected = seed_outputs(exported, "forecaster", x)          # (3, 1): the whole sequences
    got = np.array([[float(line.split(": ")[1].split()[0])] for line in lines])
    assert compare(got, expected, spec.tolerance("cpu")).passed, (got, expected)   # 6 digits
    assert all("h_out [" in line for line in lines)


def test_stream_output_file_holds_output_and_state(exported, tmp_path):
    spec = spec_of(exported, "classifier")
    x = np.random.default_rng(6).standard_normal((2, 9, spec.input_size)).astype(np.float32)
    np.savez(tmp_path / "s.npz", input=x, lengths=np.array([9, 9]), h_in=np.zeros((2, 8)))
    result = predict(exported, "classifier", tmp_path / "s.npz", "--stream",
                     "--output", str(tmp_path / "y.npz"))
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "y.npz")
    assert sorted(saved.files) == ["h_out", "output"]
    assert compare(saved["output"], seed_outputs(exported, "classifier", x),
                   spec.tolerance("cpu"), True).passed
    seed = seed_model(spec)   # the seed's own final state
    seed.load_state_dict(load_file(exported["out"] / "classifier" / "weights.safetensors"))
    with torch.inference_mode():
        h = seed.rnn(torch.from_numpy(x))[1][0].numpy()
    assert compare(saved["h_out"], h, spec.tolerance("cpu")).passed


def bad_stream_inputs(f, h):
    x = np.zeros((2, 5, f), np.float32)
    return [
        ("len0.npz", dict(input=x, lengths=np.array([0, 5])), "lengths[0] = 0 is out of range"),
        ("long.npz", dict(input=x, lengths=np.array([5, 6])), "lengths[1] = 6 is out of range"),
        ("neg.npz", dict(input=x, lengths=np.array([-1, 5])), "lengths[0] = -1 is out of range"),
        ("hbatch.npz", dict(input=x, lengths=np.array([5, 5]), h_in=np.zeros((3, h))),
         f"h_in has shape (3, {h}); the model takes (2, {h})"),
        ("seq0.npz", dict(input=x[:, :0], lengths=np.array([1, 1])), "batch and seq must be >= 1"),
        ("nolen.npz", dict(input=x), "needs arrays 'input' and 'lengths'"),
        ("flen.npz", dict(input=x, lengths=np.array([5.0, 5.0])), "lengths is float64"),
        ("extra.npz", dict(input=x, lengths=np.array([5, 5]), other=x), "unexpected arrays"),
        ("hnan.npz", dict(input=x, lengths=np.array([5, 5]), h_in=np.full((2, h), np.nan)),
         "h_in is not finite"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_each_stream_input_violation_is_one_line(exported, tmp_path, case):
    name, arrays, needle = bad_stream_inputs(5, 8)[case]
    np.savez(tmp_path / name, **arrays)
    result = predict(exported, "classifier", tmp_path / name, "--stream",
                     "--output", str(tmp_path / "y.npz"))
    one_line_error(result, name, needle)
    assert not (tmp_path / "y.npz").exists()


def test_stream_wants_npz_in_and_out(exported, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 5), np.float32))
    one_line_error(predict(exported, "classifier", tmp_path / "x.npy", "--stream"),
                   "--stream takes an .npz")
    np.savez(tmp_path / "x.npz", input=np.zeros((1, 2, 5), np.float32), lengths=np.array([2]))
    one_line_error(predict(exported, "classifier", tmp_path / "x.npz", "--stream", "--output",
                           str(tmp_path / "y.npy")), "must be a .npz file")


def test_damaged_stream_artifact_is_refused_before_loading(exported, tmp_path, monkeypatch):
    import shutil

    import onnxruntime
    shutil.copytree(exported["out"] / "classifier", tmp_path / "out" / "classifier")
    path = tmp_path / "out" / "classifier" / "model_stream.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("loaded"))
    np.savez(tmp_path / "x.npz", input=np.zeros((1, 2, 5), np.float32), lengths=np.array([2]))
    result = CliRunner().invoke(cli, ["predict", "--model", "classifier", "--stream", "--input",
                                      str(tmp_path / "x.npz"), "--out", str(tmp_path / "out")])
    one_line_error(result, "model_stream.onnx: sha256 differs")
