"""The backends are generic over the model config: a synthetic model with three inputs (FP32,
INT64 with `reshape`, FP32 state) and two outputs, `max_batch_size > 0` and dynamic batching,
the shape of the stream models (`<model>_stream_onnx` / `_stream_torchscript`), and the same
with `max_batch_size: 0` -- served by onnxruntime and pytorch alike, answers equal to numpy,
concurrent requests merged correctly."""
from pathlib import Path

import numpy as np
import pytest

from pipeline.manifest import write_manifest
from tests.serving.conftest import start, stop_and_check

F, O, H = 3, 2, 4      # features, outputs, state size


def expected(x, lengths, h):
    """(batch, seq, F), (batch,), (batch, H) -> (batch, O), (batch, H)."""
    return x[:, :, :O].sum(axis=1) + lengths[:, None].astype(np.float32), h * 2


def config(name, backend, filename, ins, outs, max_batch_size=8):
    """With max_batch_size > 0 the batch axis is Triton's (stream-model style, lengths [1]
    reshaped to []); with 0 every dims starts with the batch axis (-1)."""
    tensor = "  {{ name: \"{}\" data_type: {} dims: [ {} ] {}}}"
    b = "" if max_batch_size else "-1, "
    lengths = ("1", "reshape: { shape: [ ] } ") if max_batch_size else ("-1", "")
    return "\n".join([
        f'name: "{name}"', f'backend: "{backend}"', f'default_model_filename: "{filename}"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(tensor.format(n, dtype, dims, extra) for n, dtype, dims, extra in [
            (ins[0], "TYPE_FP32", f"{b}-1, {F}", ""), (ins[1], "TYPE_INT64", *lengths),
            (ins[2], "TYPE_FP32", f"{b}{H}", "")]) + "\n]",
        "output [\n" + ",\n".join(tensor.format(n, "TYPE_FP32", dims, "") for n, dims in [
            (outs[0], f"{b}{O}"), (outs[1], f"{b}{H}")]) + "\n]",
        *(["dynamic_batching { max_queue_delay_microseconds: 2000 }"] if max_batch_size else []), ""])


def onnx_model(path: Path):
    import onnx
    from onnx import TensorProto, helper

    const = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    graph = helper.make_graph([
        helper.make_node("Slice", ["input", "zero", "o", "two"], ["first"]),
        helper.make_node("ReduceSum", ["first", "one"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["lengths_f", "one"], ["lengths_col"]),
        helper.make_node("Add", ["summed", "lengths_col"], ["output"]),
        helper.make_node("Add", ["h_in", "h_in"], ["h_out"]),
    ], "synthetic", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "seq", F]),
        helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", H]),
    ], [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", O]),
        helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", H])],
        initializer=[const("zero", [0]), const("o", [O]), const("two", [2]), const("one", [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)


def torchscript_model(path: Path):
    import torch

    class Synthetic(torch.nn.Module):
        def forward(self, input, lengths, h_in):
            return input[:, :, :2].sum(1) + lengths.unsqueeze(1).to(input.dtype), h_in * 2

    torch.jit.save(torch.jit.script(Synthetic()), str(path))


# The pytorch backend's three naming rules (backends/naming.py): `<name>__<index>` (configs
# published before issue 24), forward's argument names (input, lengths, h_in), config order.
NAMES = {"synthetic_onnx": (("input", "lengths", "h_in"), ("output", "h_out")),
         "synthetic_torchscript": (("input__0", "lengths__1", "h_in__2"), ("output__0", "h_out__1")),
         "synthetic_unbatched_onnx": (("input", "lengths", "h_in"), ("output", "h_out")),
         "synthetic_unbatched_torchscript": (("input", "lengths", "h_in"), ("output", "h_out")),
         "synthetic_ordered_torchscript": (("x", "n", "state"), ("y", "state_out"))}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    registry = tmp_path_factory.mktemp("synthetic")
    for name, (ins, outs) in NAMES.items():
        backend, filename, build = (("pytorch", "model.pt", torchscript_model) if "torchscript" in name
                                    else ("onnxruntime", "model.onnx", onnx_model))
        version = registry / name / "1"
        version.mkdir(parents=True)
        build(version / filename)
        write_manifest(version, [filename])
        (registry / name / "config.pbtxt").write_text(
            config(name, backend, filename, ins, outs, 0 if "unbatched" in name else 8))
    server = start(registry)
    yield server
    stop_and_check(server)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_multi_input_multi_output_models(synthetic, protocol):
    import tritonclient.grpc as grpc
    import tritonclient.http as http

    module = http if protocol == "http" else grpc
    rng = np.random.default_rng(3)
    with module.InferenceServerClient(synthetic.urls[protocol], **(
            {"concurrency": 8} if protocol == "http" else {})) as triton:
        for model, (ins, outs) in NAMES.items():
            pending = []
            for batch in (1, 1, 1, 1, 2, 3, 1, 1):     # concurrent: the batcher merges them
                x = rng.standard_normal((batch, 5, F)).astype(np.float32)
                lengths = rng.integers(1, 6, size=(batch, 1)).astype(np.int64)
                if "unbatched" in model:      # dims [-1]: the batch axis only
                    lengths = lengths[:, 0]
                h = rng.standard_normal((batch, H)).astype(np.float32)
                tensors = []
                for name, value, dtype in zip(ins, (x, lengths, h), ("FP32", "INT64", "FP32")):
                    tensors.append(module.InferInput(name, list(value.shape), dtype))
                    tensors[-1].set_data_from_numpy(value)
                requested = [module.InferRequestedOutput(n) for n in outs]
                if protocol == "http":
                    pending.append((triton.async_infer(model, tensors, outputs=requested), x, lengths, h))
                else:
                    pending.append((triton.infer(model, tensors, outputs=requested), x, lengths, h))
            for call, x, lengths, h in pending:
                result = call.get_result() if protocol == "http" else call
                want = expected(x, lengths.reshape(-1), h)
                for name, value in zip(outs, want):
                    np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-6, atol=1e-6,
                                               err_msg=f"{model} {name}")
