"""Post-export normalisation: make the exporter's ONNX file portable to every conformant runtime.

    from pipeline.export.normalize import normalize
    model = normalize(onnx.load("model.onnx"), spec)   # NormalizeError if a rule can't be met

The export stage calls `normalize` on every ONNX file before its self-check, so what is
proved and shipped is the normalised graph. Each rule fixes a failure measured in a real
runtime (issue 11); see `normalize`'s docstring.
"""
from __future__ import annotations

from ..errors import ExportError, first_line
from ..specs import ModelSpec


def normalize(model, spec: ModelSpec, extra_symbols: tuple[str, ...] = ()):
    """Return `model` (an onnx.ModelProto, changed in place) after these rules, in order:

    1. Every ConstantOfShape gets an explicit typed `value`: a zero of its output's element
       type where the graph declares that type, else float32 zero (the operator's default).
       Why: the default is implicit, and tract infers float64 for it, then fails with
       "Impossible to unify F32 with F64" where the zero initial state meets float32 data.
    2. The only symbolic dimension names left anywhere (graph inputs, outputs, value_info,
       and the same in every If/Scan/Loop subgraph) are the spec's own axis names
       (`batch`, `seq`) and `extra_symbols`; any other (the exporter's `s77`, `s11`, ...) is
       cleared to an unknown dimension. Why: tract takes each name as a global symbol, and
       an `s77` on a subgraph input that is really `batch` fails with "Impossible to unify
       Sym(s77) with Sym(batch)". An unnamed dimension promises nothing false.
    3. Subgraph `value_info` is removed. Why: it is the exporter's intermediate bookkeeping
       (where rule 2's stray symbols live), optional in ONNX, and each runtime re-infers it;
       a stale entry only ever hurts. Top-level value_info is kept after rule 2.
    4. `onnx.checker.check_model(full_check=True)` and strict shape inference
       (`onnx.shape_inference.infer_shapes(strict_mode=True)`) must pass; their inferred
       value_info is not kept (inference may coin `unk__N` names, which rule 2 forbids).
       Why: a graph the ONNX spec itself cannot type is one no runtime is bound to run.
    ExportError names the rule that failed.
    """
    import onnx

    allowed = {a for t in (spec.input, spec.output) for a in t.shape if isinstance(a, str)}
    allowed |= set(extra_symbols)
    types = _declared_types(model.graph)
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.op_type == "ConstantOfShape":
                _give_value(node, types.get(node.output[0], onnx.TensorProto.FLOAT))
        for info in (*graph.input, *graph.output, *graph.value_info):
            for dim in info.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and dim.dim_param not in allowed:
                    dim.ClearField("dim_param")
        if graph is not model.graph:
            del graph.value_info[:]
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise ExportError(f"{spec.name}: ONNX checker rejects the normalised graph: "
                          f"{first_line(exc)}") from None
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"{spec.name}: strict ONNX shape inference fails on the normalised "
                          f"graph: {first_line(exc)}") from None
    return model


def normalize_file(path, spec: ModelSpec) -> None:
    """Load the ONNX file at `path`, normalise it, write it back (one self-contained file)."""
    import onnx
    onnx.save(normalize(onnx.load(str(path)), spec), str(path))


def symbols(model) -> set[str]:
    """Every symbolic dimension name in the model, subgraphs included (for tests and checks)."""
    return {d.dim_param for g in _graphs(model.graph)
            for info in (*g.input, *g.output, *g.value_info)
            for d in info.type.tensor_type.shape.dim if d.HasField("dim_param")}


def _graphs(graph):
    """`graph` and every subgraph nested in its nodes' attributes (If branches, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _declared_types(graph) -> dict[str, int]:
    """{tensor name: ONNX element type} for every typed tensor in the graph and its subgraphs."""
    return {info.name: info.type.tensor_type.elem_type for g in _graphs(graph)
            for info in (*g.input, *g.output, *g.value_info)
            if info.type.tensor_type.elem_type}


def _give_value(node, elem_type: int) -> None:
    import numpy as np
    from onnx import helper, numpy_helper

    if any(a.name == "value" for a in node.attribute):
        return
    zero = np.zeros(1, dtype=helper.tensor_dtype_to_np_dtype(elem_type))
    node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(zero)))
