"""What an exported ONNX file is: checked with onnx.checker (full_check), its signature
against the spec, and its facts for the manifest (opset, IR version, ops, domains).

    facts = describe(path, spec)                                      # model.onnx
    facts = describe(path, spec, spec.stream_inputs, spec.stream_outputs)   # the stream graph
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ExportError, first_line
from ..specs import ModelSpec


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _op_types(graph) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:          # If branches and Scan bodies are subgraphs
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") or attr.graphs else []:
                ops |= _op_types(sub)
    return ops


def describe(path: Path, spec: ModelSpec, inputs=None, outputs=None) -> dict:
    """Check the ONNX file (checker full_check, signature vs spec); return its facts.

    `inputs`/`outputs`: the TensorSpecs the graph must declare, in order; default the
    spec's one input and output (the stream graph passes spec.stream_inputs/outputs)."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
        raise ExportError(f"{spec.name}: ONNX checker rejects the graph: "
                          f"{first_line(exc)}") from None
    dtype = onnx.helper.tensor_dtype_to_np_dtype
    for got, wants in ((model.graph.input, inputs or spec.inputs),
                       (model.graph.output, outputs or (spec.output,))):
        if [v.name for v in got] != [w.name for w in wants]:
            raise ExportError(f"{spec.name}: graph tensors {[v.name for v in got]}, spec "
                              f"wants {[w.name for w in wants]}")
        for value, want in zip(got, wants):
            if _dims(value) != list(want.shape) or \
                    str(dtype(value.type.tensor_type.elem_type)) != want.dtype:
                raise ExportError(f"{spec.name}: {want.name} is {_dims(value)}, spec wants "
                                  f"{list(want.shape)} {want.dtype}")
    return {
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
        "ops": sorted(_op_types(model.graph)),
        "domains": sorted({o.domain or "ai.onnx" for o in model.opset_import}),
    }
