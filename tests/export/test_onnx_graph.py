"""The exported graphs against the seed classes (the independent reference), at many shapes."""
import numpy as np
import onnx
import pytest
import torch

from pipeline.checkpoint import load_checkpoint
from pipeline.compare import compare
from pipeline.runtimes import load_runner
from pipeline.specs import MODEL_NAMES

from ..seeds import seed_model

# (batch, seq): seq 1, the example length 7, >= 10x it; batch 1, around the If's switch
# between the RNN-operator branch (batch <= 4) and the Scan branch, and >= 64.
SHAPES = [(1, 1), (1, 7), (1, 70), (4, 13), (5, 2), (64, 1), (64, 70), (65, 100), (2, 300)]


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def models(exported):
    """{name: (spec, seed-class model with the trained weights, {runtime: runner})}."""
    from safetensors.torch import load_file
    result = {}
    for name in MODEL_NAMES:
        folder = exported["out"] / name
        _, config = load_checkpoint(folder)
        spec = config["recipe"].model
        seed = seed_model(spec).eval()
        seed.load_state_dict(load_file(folder / "weights.safetensors"), strict=True)
        runners = {r: load_runner(r, spec, folder / f) for r, f in
                   (("onnx", "model.onnx"), ("torchscript", "model.pt"))}
        result[name] = (spec, seed, runners)
    return result


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_axes_are_symbolic_and_named(exported, name):
    graph = onnx.load(str(exported["out"] / name / "model.onnx")).graph
    spec, _, _ = load_checkpoint(exported["out"] / name)[1]["recipe"].model, None, None
    assert dims(graph.input[0]) == ["batch", "seq", spec.input_size]
    assert dims(graph.output[0]) == ["batch", spec.output_size]
    assert graph.input[0].name == spec.input_name and graph.output[0].name == spec.output_name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_graph_uses_only_standard_operators(exported, name):
    model = onnx.load(str(exported["out"] / name / "model.onnx"))
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
@pytest.mark.parametrize("batch,seq", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 10.0])   # 10: saturates tanh
def test_artifact_matches_seed_class(models, name, runtime, batch, seq, scale):
    spec, seed, runners = models[name]
    x = (scale * np.random.default_rng(batch * 1000 + seq).standard_normal(
        (batch, seq, spec.input_size))).astype(np.float32)
    with torch.inference_mode():
        expected = seed(torch.from_numpy(x)).numpy()
    actual = runners[runtime].run({spec.input_name: x})[spec.output_name]
    c = compare(actual, expected, spec.tolerance("cpu"), spec.task == "classification")
    assert c.passed, c.reason
