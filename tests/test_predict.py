"""`predict`: outputs against the seed classes, and the input policy, one violation each."""
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.checkpoint import read_config
from pipeline.cli import cli
from pipeline.compare import compare
from pipeline.runtimes import RUNTIMES
from pipeline.specs import SPECS

from .seeds import seed_model
from .test_cli import one_line_error


def spec_of(exported, name):
    return read_config(exported["out"] / name)["recipe"].model


def seed_outputs(exported, name, x):
    """The seed document's class with the trained weights: the independent reference."""
    from safetensors.torch import load_file
    model = seed_model(spec_of(exported, name))
    model.load_state_dict(load_file(exported["out"] / name / "weights.safetensors"))
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


def predict(exported, name, path, *extra):
    return CliRunner().invoke(cli, ["predict", "--model", name, "--input", str(path),
                                    "--out", str(exported["out"]), *extra])


def rows(output):
    return [line for line in output.splitlines() if re.match(r"\d+: ", line)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_classifier_prints_class_and_logits_like_the_seed(exported, tmp_path, runtime):
    spec = spec_of(exported, "classifier")
    x = np.random.default_rng(1).standard_normal((5, 13, spec.input_size)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = predict(exported, "classifier", tmp_path / "x.npy", "--runtime", runtime)
    assert result.exit_code == 0, result.output
    expected = seed_outputs(exported, "classifier", x)
    lines = rows(result.output)
    assert len(lines) == len(x)
    for line, want in zip(lines, expected):
        cls, logits = re.match(r"\d+: class (\d+)  logits \[(.*)\]", line).groups()
        assert int(cls) == want.argmax()
        got = np.array([float(v) for v in logits.split(",")])
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)   # printed to 6 digits


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_output_file_matches_the_seed_within_tolerance(exported, tmp_path, runtime):
    spec = spec_of(exported, "forecaster")
    x = np.random.default_rng(2).standard_normal((4, 21, spec.input_size))   # float64: converted
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    result = predict(exported, "forecaster", tmp_path / "x.npy", "--runtime", runtime,
                     "--output", str(out))
    assert result.exit_code == 0, result.output
    y = np.load(out, allow_pickle=False)
    expected = seed_outputs(exported, "forecaster", x.astype(np.float32))
    assert y.dtype == np.dtype(spec.dtype)
    assert compare(y, expected, spec.tolerance("cpu")).passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]   # no temp left


def test_csv_is_one_sequence_and_npz_one_array(exported, tmp_path):
    spec = spec_of(exported, "forecaster")
    table = np.random.default_rng(3).standard_normal((17, spec.input_size))
    np.savetxt(tmp_path / "x.csv", table, delimiter=",", fmt="%.9g")
    np.savez(tmp_path / "x.npz", other=np.zeros(3), **{spec.input_name: table[None]})
    expected = seed_outputs(exported, "forecaster", table[None].astype(np.float32))
    for name in ("x.csv", "x.npz"):
        result = predict(exported, "forecaster", tmp_path / name)
        assert result.exit_code == 0, result.output
        (line,) = rows(result.output)
        assert abs(float(line.split(": ")[1]) - expected[0, 0]) < 1e-4


def bad_inputs(spec):
    """(file name, writer, message needle) for every rule of the input policy."""
    f, rng = spec.input_size, np.random.default_rng(0)
    good = rng.standard_normal((2, 6, f)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[1, 4, f - 1] = np.nan
    inf[0, 2, 0] = -np.inf

    def npy(a, **kw):
        return lambda p: np.save(p, a, **kw)
    return [
        ("rank2.npy", npy(good[0]), "rank 2"),
        ("rank4.npy", npy(good[None]), "rank 4"),
        ("features.npy", npy(good[..., :-1]),
         f"feature size {f - 1}, model {spec.name} expects {f}"),
        ("batch0.npy", npy(good[:0]), "batch and seq must be >= 1"),
        ("seq0.npy", npy(good[:, :0]), "batch and seq must be >= 1"),
        ("int.npy", npy(good.astype(np.int32)), "dtype int32"),
        ("half.npy", npy(good.astype(np.float16)), "dtype float16"),
        ("complex.npy", npy(good.astype(np.complex64)), "dtype complex64"),
        ("nan.npy", npy(nan), f"NaN at index (1, 4, {f - 1})"),
        ("inf.npy", npy(inf), "-Inf at index (0, 2, 0)"),
        ("overflow.npy", npy(np.full((1, 1, f), 1e300)), "overflows float32"),
        ("object.npy", npy(np.array([{"x": 1}], dtype=object), allow_pickle=True), "pickled"),
        ("garbage.npy", lambda p: p.write_bytes(b"hello world"), "not a .npy file"),
        ("truncated.npy", lambda p: (np.save(p, good), p.write_bytes(p.read_bytes()[:200])),
         "unreadable"),
        ("empty.npy", lambda p: p.write_bytes(b""), "not a .npy file"),
        ("two.npz", lambda p: np.savez(p, a=good, b=good), "give exactly one"),
        ("object.npz", lambda p: np.savez(p, a=np.array([None], dtype=object)), "pickled"),
        ("notzip.npz", lambda p: p.write_bytes(b"\x93NUMPY..."), "not a .npz file"),
        ("header.csv", lambda p: p.write_text("a,b\n1,2\n"), "unreadable"),
        ("ragged.csv", lambda p: p.write_text("1,2,3\n1,2\n"), "unreadable"),
        ("empty.csv", lambda p: p.write_text(""), "no rows"),
        ("nan.csv", lambda p: p.write_text("\n".join([",".join(["1"] * f)] * 3 + [
            ",".join(["nan"] * f)])), "NaN at index (0, 3, 0)"),
        ("x.txt", lambda p: p.write_text("1"), "unsupported file type '.txt'"),
    ]


@pytest.mark.parametrize("name,write,needle", [pytest.param(*case, id=case[0])
                                                for case in bad_inputs(SPECS["classifier"])])
def test_each_input_violation_is_one_line(exported, tmp_path, name, write, needle):
    path = tmp_path / name
    write(path)
    result = predict(exported, "classifier", path, "--output", str(tmp_path / "y.npy"))
    one_line_error(result, str(path), needle)
    assert not (tmp_path / "y.npy").exists()
