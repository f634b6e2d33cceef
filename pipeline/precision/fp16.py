"""fp16: model_fp16.onnx for ONNX Runtime's CUDA provider (written anywhere, run on a GPU).

The fp32 graph with every float tensor made float16: initializers, ConstantOfShape fills,
the declared types of If/Scan subgraph values, and a Cast at each graph input and output so
the contract (float32 in, float32 out) does not change. The ONNX reference evaluator runs it
on a CPU (how tests check the file computes the model); timing it means CUDA, where
`unavailable` sends anyone without a GPU away before anything is loaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Variant, graphs

FLOAT, FLOAT16 = 1, 10      # onnx.TensorProto element types


def to_float16(model):
    """A float16 copy of an fp32 ModelProto, float32 at its inputs and outputs."""
    import copy

    from onnx import helper, numpy_helper
    model = copy.deepcopy(model)
    g = model.graph
    for i, init in enumerate(g.initializer):
        if init.data_type == FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name))
    _retype(g, top=True)
    casts_in, renamed = [], {}
    for inp in g.input:
        if inp.type.tensor_type.elem_type == FLOAT:
            renamed[inp.name] = f"{inp.name}_fp16"
            casts_in.append(helper.make_node("Cast", [inp.name], [renamed[inp.name]],
                                             to=FLOAT16, name=f"cast_{inp.name}"))
    _rename_inputs(g, renamed)
    for out in g.output:
        if out.type.tensor_type.elem_type == FLOAT:
            half = f"{out.name}_fp16"
            for node in _all_nodes(g):
                _replace(node.output, {out.name: half})
            g.node.append(helper.make_node("Cast", [half], [out.name], to=FLOAT,
                                           name=f"cast_{out.name}"))
    nodes = [*casts_in, *g.node]
    del g.node[:]
    g.node.extend(nodes)
    return model


def _all_nodes(g):
    return (n for sub in graphs(g) for n in sub.node)


def _replace(names, renamed: dict) -> None:
    """Rename in a protobuf repeated string field, in place."""
    for k, name in enumerate(names):
        if name in renamed:
            names[k] = renamed[name]


def _rename_inputs(g, renamed: dict) -> None:
    for node in _all_nodes(g):
        _replace(node.input, renamed)


def _retype(g, top: bool = False) -> None:
    """Float tensors of subgraphs (their inputs, outputs, value_info) and constants -> fp16."""
    from onnx import numpy_helper
    infos = [*g.value_info] if top else [*g.input, *g.output, *g.value_info]
    for vi in infos:
        if vi.type.tensor_type.elem_type == FLOAT:
            vi.type.tensor_type.elem_type = FLOAT16
    for node in g.node:
        for a in node.attribute:
            if a.type == a.GRAPH:
                _retype(a.g)
            elif a.type == a.TENSOR and a.t.data_type == FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            elif node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                a.i = FLOAT16


class FP16(Variant):
    name, runtimes, device = "fp16", ("onnx",), "cuda"
    summary = "weights and arithmetic in float16 on ONNX Runtime's CUDA provider"

    def files(self, spec):
        files = {"model": "model_fp16.onnx"}
        if spec.has_stream:
            files["stream"] = "model_stream_fp16.onnx"
        return files

    def write(self, spec, fp32, paths):
        import onnx
        for kind, path in paths.items():
            model = to_float16(onnx.load(str(fp32[kind])))
            onnx.checker.check_model(model)
            Path(path).write_bytes(model.SerializeToString())
        return {}

    def load(self, runtime, spec, path, threads=None, stream=False):
        from ..runtimes.ort import load_ort
        runner = load_ort(spec, path, "cuda", threads)
        runner.precision = "float16"
        return runner

    def unavailable(self, runtime):
        reason = super().unavailable(runtime)
        if reason is None:
            import onnxruntime as ort
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "fp16 runs on ONNX Runtime's CUDA provider; this machine has none"
        return reason


FP16 = FP16()
