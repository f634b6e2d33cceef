"""Recurrent layers kept f32 under OpenVINO's bf16 hint (pipeline/precision/ov_f32.py), on
bench_cells' 2-layer GRU (H=64, F=16), imported with `--module` and exported in fp32.

References: the user's own module (bench_cells' factory), and OpenVINO's compiled runtime
model for the precision each layer really runs in. On a CPU without bf16 units the hint
gives f32 everywhere; the checks that a layer left unmarked runs bf16 need bf16 units.
"""
import numpy as np
import onnx
import pytest
import torch

from pipeline.bench_cells import user_module
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.precision.bf16 import cpu_has_bf16
from pipeline.precision.ov_f32 import f32_ir, head_as_reduce, runtime_precisions

NAME = "gru_2"


@pytest.fixture(scope="module")
def gru_2(tmp_path_factory):
    out = tmp_path_factory.mktemp("ovf32")
    weights = out / f"{NAME}.pt"
    torch.save(user_module(NAME).state_dict(), weights)
    import_model(ImportConfig(NAME, weights, "classification",
                              module=f"pipeline.bench_cells:{NAME}", out=out), log=lambda s: None)
    export(ExportConfig(NAME, out, precisions=("fp32",)), log=lambda s: None)
    return out / NAME


def user_outputs(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return user_module(NAME)(torch.from_numpy(x)).numpy()


def inputs() -> list[np.ndarray]:
    """(batch, seq, 16) at unit scale and x10 (the gates saturate), batch 1 and 64."""
    rng = np.random.default_rng(5)
    return [(scale * rng.standard_normal((b, s, 16))).astype(np.float32)
            for b, s in ((1, 7), (64, 50)) for scale in (1.0, 10.0)]


def compile_bf16(path):
    import openvino as ov
    return ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1})


def run(compiled, x):
    return compiled.create_infer_request().infer({"input": x})[compiled.outputs[0]]


def test_every_layer_marked_runs_f32_under_the_bf16_hint(gru_2, tmp_path):
    """Every node marked: each GRU runs f32 in OpenVINO's runtime model, and the outputs are
    the user's module's to f32 rounding (bf16 would be ~1-3% of the std off)."""
    f32_ir(onnx.load(str(gru_2 / "model.onnx")), tmp_path / "all.xml")
    compiled = compile_bf16(tmp_path / "all.xml")
    precisions = runtime_precisions(compiled)
    assert [p for _, _, p in precisions] == ["f32", "f32"], precisions
    for x in inputs():
        want = user_outputs(x)
        np.testing.assert_allclose(run(compiled, x), want, rtol=0,
                                   atol=1e-5 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("layer", [0, 1])
def test_one_layer_marked_runs_f32_and_the_other_bf16(gru_2, tmp_path, layer):
    """Mixed precision per layer: the marked GRU runs f32, the other bf16 (bf16 CPUs)."""
    xml = tmp_path / f"layer{layer}.xml"
    f32_ir(onnx.load(str(gru_2 / "model.onnx")), xml, layers=[layer])
    compiled = compile_bf16(xml)
    precisions = [p for _, _, p in runtime_precisions(compiled)]
    assert precisions[layer] == "f32", precisions
    if cpu_has_bf16():
        assert precisions[1 - layer] == "bf16", precisions
    x = inputs()[1]
    want = user_outputs(x)
    err = float(np.abs(run(compiled, x) - want).max() / want.std())
    assert err < 0.05            # the same function, one layer's products in bf16


def test_head_as_reduce_is_the_gemm_head(gru_2):
    """The head rewritten as a broadcast product + ReduceSum gives the user's outputs in
    ONNX Runtime (the native branch's function is unchanged)."""
    import onnxruntime as ort

    from pipeline.precision.bf16 import native_branch
    model = onnx.load(str(gru_2 / "model.onnx"))
    native_branch(model.graph)
    assert head_as_reduce(model.graph) == 1
    assert not any(n.op_type == "Gemm" for n in model.graph.node)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in inputs():
        want = user_outputs(x)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=0,
                                   atol=1e-5 * max(1.0, float(np.abs(want).max())))
