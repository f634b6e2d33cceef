"""tract (Sonos' Rust ONNX runtime, the `tract` PyPI package) on model.onnx, CPU.

Generic over the artifact's tensors: input facts (element type and dims, symbolic axes
as tract symbols) are read from the ONNX file's own graph inputs, so any exported graph
(model.onnx, a streaming variant with int64 lengths and a state input) loads by name.
The Python bindings expose no thread setting: tract runs its kernels on the calling
thread, so its runner reports threads=1 whatever was asked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner

# ONNX element type -> tract fact suffix (the types our graphs carry at their boundary)
_FACT_TYPES = {1: "f32", 11: "f64", 7: "i64", 6: "i32", 9: "bool", 10: "f16"}


class TractRunner(Runner):
    def run(self, feeds):
        args = [np.ascontiguousarray(feeds[n]) for n in self.inputs]
        values = self.impl.run(args)
        return {name: v.to_numpy() for name, v in zip(self.outputs, values)}


def graph_signature(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """([(input name, tract fact such as 'batch,seq,5,f32')], [output names]) of an ONNX file."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = []
    for info in graph.input:
        if info.name in initializers:          # IR < 4 lists weights as inputs too
            continue
        t = info.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
        inputs.append((info.name, ",".join([*dims, _FACT_TYPES[t.elem_type]])))
    return inputs, [o.name for o in graph.output]


def load_tract(spec: ModelSpec, path: Path, threads: int | None = None) -> TractRunner:
    import tract
    inputs, outputs = graph_signature(path)
    try:
        model = tract.onnx().load(str(path))
        for i, (_, fact) in enumerate(inputs):
            model.set_input_fact(i, fact)
        runnable = model.into_model().into_runnable()   # typed, decluttered, optimised
    except tract.TractError as exc:
        raise PipelineError(f"{path}: tract cannot load it ({first_line(exc)})") from None
    return TractRunner("tract", spec, "cpu", 1, runnable, inputs=[n for n, _ in inputs],
                       outputs=outputs)
