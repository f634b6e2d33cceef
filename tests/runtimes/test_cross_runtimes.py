"""ONNX Runtime, OpenVINO, tract and the ONNX reference evaluator against the seed classes.

The seed classes (tests/seeds.py) with the trained weights are the independent reference,
in float32 and, for the measured float32 drift of compare.py's rule, in float64 (with the
rounded siblings of runtimes.pytorch.float64_models). Shapes:
batch 1 seq 1, an odd 3x65 (RNN-operator branch), 17x33 (Scan branch) and 13x2048, a
sequence 30x longer than any verify default (the reference evaluator runs it too: ~70 ms).
"""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.compare import compare
from pipeline.checkpoint import load_checkpoint
from pipeline.runtimes import CROSS_RUNTIMES, load_runner, load_stream_runner, open_runners
from pipeline.runtimes.pytorch import float64_models
from pipeline.specs import MODEL_NAMES

from ..seeds import seed_model
from ..test_cli import one_line_error

ONNX_RUNTIMES = ("onnx", *CROSS_RUNTIMES)
SHAPES = [(1, 1), (3, 65), (17, 33), (13, 2048)]


@pytest.fixture(scope="module")
def seeds(exported):
    """{name: (spec, seed float32, [seed in float64 and its rounded siblings], {runtime: runner})},
    the seed classes holding the trained weights."""
    from safetensors.torch import load_file
    result = {}
    for name in MODEL_NAMES:
        folder = exported["out"] / name
        runners = dict(zip(ONNX_RUNTIMES, open_runners(folder, ONNX_RUNTIMES, threads=1)))
        spec = runners["onnx"].spec
        seed = seed_model(spec).eval()
        seed.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
        result[name] = (spec, seed, float64_models(seed), runners)
    return result


def run_seed(model, x):
    """The seed's forward in x's dtype; the forecaster seed's torch.zeros state follows it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if x.dtype == np.float64 else torch.float32)
    try:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", ONNX_RUNTIMES)
@pytest.mark.parametrize("batch,seq", SHAPES)
def test_runtime_matches_seed_class(seeds, name, runtime, batch, seq):
    spec, seed, seeds64, runners = seeds[name]
    runner = runners[runtime]
    assert runner.precision == "float32"          # OpenVINO: read back from the compiled model
    x = np.random.default_rng(batch * 7919 + seq).standard_normal(
        (batch, seq, spec.input_size)).astype(np.float32)
    expected = run_seed(seed, x)
    exact = [run_seed(m, x.astype(np.float64)) for m in seeds64]
    actual = runner.run({spec.input_name: x})[spec.output_name]
    c = compare(actual, expected, spec.tolerance("cpu"), spec.task == "classification",
                exact, spec.drift_factor)
    assert c.passed, f"{runtime} {batch}x{seq}: {c.reason} (float32 drift {c.f32_drift:.2g})"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tract_loads_both_artifacts(exported, name):
    """tract takes model.onnx and model_stream.onnx by their own tensor names (input facts
    read from the graphs); what it once failed on, exporter symbols and untyped
    ConstantOfShape values, is normalised away (tests/export/test_normalize.py)."""
    import tract

    folder = exported["out"] / name
    spec = load_checkpoint(folder)[1]["recipe"].model
    runner = load_runner("tract", spec, folder / "model.onnx")
    assert runner.inputs == ("input",) and runner.outputs == ("output",)
    stream = load_stream_runner("tract", spec, folder / "model_stream.onnx")
    assert stream.inputs == tuple(t.name for t in spec.stream_inputs)
    assert tract.version()


def stream_like_graph(path, features=3, hidden=4):
    """A graph shaped like issue 13's model_stream.onnx: input (batch, seq, F) float32,
    lengths (batch,) int64, h_in (batch, H) float32 -> output (batch, 2), h_out (batch, H).
    h_out = h_in + sum over steps of x @ W, masked... simply: + lengths as float."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper
    w = np.arange(features * hidden, dtype=np.float32).reshape(features, hidden) / 10
    nodes = [helper.make_node("ReduceSum", ["input", "axis1"], ["xs"], keepdims=0),  # (B, F)
             helper.make_node("MatMul", ["xs", "w"], ["proj"]),                       # (B, H)
             helper.make_node("Cast", ["lengths"], ["lf"], to=T.FLOAT),
             helper.make_node("Unsqueeze", ["lf", "axis1"], ["lf2"]),                 # (B, 1)
             helper.make_node("Add", ["proj", "h_in"], ["hp"]),
             helper.make_node("Add", ["hp", "lf2"], ["h_out"]),
             helper.make_node("Slice", ["h_out", "zero", "two", "axis1"], ["output"])]
    graph = helper.make_graph(
        nodes, "stream",
        [helper.make_tensor_value_info("input", T.FLOAT, ["batch", "seq", features]),
         helper.make_tensor_value_info("lengths", T.INT64, ["batch"]),
         helper.make_tensor_value_info("h_in", T.FLOAT, ["batch", hidden])],
        [helper.make_tensor_value_info("output", T.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("h_out", T.FLOAT, ["batch", hidden])],
        [onnx.numpy_helper.from_array(w, "w"),
         onnx.numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         onnx.numpy_helper.from_array(np.array([0], np.int64), "zero"),
         onnx.numpy_helper.from_array(np.array([2], np.int64), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return w


@pytest.mark.parametrize("runtime", CROSS_RUNTIMES)
def test_runners_are_generic_over_named_tensors(tmp_path, runtime):
    """Several inputs (one int64) and outputs, by name, at two batch sizes: no shape or
    name is built into a runner."""
    from pipeline.specs import SPECS
    w = stream_like_graph(tmp_path / "stream.onnx")
    runner = load_runner(runtime, SPECS["classifier"], tmp_path / "stream.onnx")
    assert runner.inputs == ("input", "lengths", "h_in") and runner.outputs == ("output", "h_out")
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 4), (5, 9)):
        feeds = {"input": rng.standard_normal((batch, seq, 3)).astype(np.float32),
                 "lengths": rng.integers(1, seq + 1, batch).astype(np.int64),
                 "h_in": rng.standard_normal((batch, 4)).astype(np.float32)}
        h_out = feeds["input"].sum(1) @ w + feeds["h_in"] + feeds["lengths"][:, None]
        got = runner.run(feeds)
        np.testing.assert_allclose(got["h_out"], h_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["output"], h_out[:, :2], rtol=1e-5, atol=1e-5)


def test_openvino_precision_is_read_back_and_bf16_fails_verify(exported):
    """OpenVINO left to itself picks bf16 on BF16/AMX CPUs; verify must not bless that."""
    from pipeline.verify import run_matrix
    folder = exported["out"] / "classifier"
    eager, ov = open_runners(folder, ("torch", "openvino"))
    assert ov.precision == "float32" and ov.provider == "CPU"
    ov.precision = "bfloat16"          # as a compiled model without the f32 hint reports it
    rows = run_matrix(ov.spec, eager, [ov], [(2, 5)], seed=0)
    assert rows and not any(r["passed"] for r in rows)
    assert all("computes in bfloat16, not float32" in r["reason"] for r in rows)


def test_cli_unknown_and_missing_runtimes(exported, monkeypatch):
    out = str(exported["out"])
    usage = CliRunner().invoke(cli, ["verify", "--out", out, "--runtime", "tensorrt"])
    assert usage.exit_code == 2 and "--runtime" in usage.output and "Traceback" not in usage.output
    import pipeline.runtimes as runtimes
    monkeypatch.setattr(runtimes, "installed", lambda r: r != "tract")
    for command in (["verify", "--runtime", "all"], ["bench", "--runtime", "tract"]):
        one_line_error(CliRunner().invoke(cli, [*command, "--out", out]),
                       "'tract' is not installed", "pip install '.[runtimes]'")


@pytest.mark.parametrize("length", [5, 63, 64, 300])
def test_reference_gather_elements_beyond_64(tmp_path, length):
    """onnx's own GatherElements (numpy.choose) fails from 64 along the axis; the runner's
    replacement gives numpy's take_along_axis, and the onnx op's result where it works."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from pipeline.specs import SPECS
    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["data", "index"], ["output"], axis=1)], "g",
        [helper.make_tensor_value_info("data", T.FLOAT, ["batch", "seq", 3]),
         helper.make_tensor_value_info("index", T.INT64, ["batch", 1, 3])],
        [helper.make_tensor_value_info("output", T.FLOAT, ["batch", 1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                                ir_version=10), str(tmp_path / "g.onnx"))
    rng = np.random.default_rng(length)
    data = rng.standard_normal((4, length, 3)).astype(np.float32)
    index = rng.integers(-length, length, (4, 1, 3)).astype(np.int64)
    runner = load_runner("onnx-reference", SPECS["classifier"], tmp_path / "g.onnx")
    got = runner.run({"data": data, "index": index})["output"]
    np.testing.assert_array_equal(got, np.take_along_axis(data, index % length, axis=1))
    if length < 64:
        original = ReferenceEvaluator(str(tmp_path / "g.onnx")).run(
            None, {"data": data, "index": index})[0]
        np.testing.assert_array_equal(got, original)
