"""normalize() on hand-built graphs that break each rule, one test per rule."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.errors import ExportError
from pipeline.export.normalize import normalize, symbols
from pipeline.specs import SPECS

SPEC = SPECS["classifier"]          # symbols allowed: batch, seq
F = TensorProto.FLOAT


def vi(name, elem, dims):
    return helper.make_tensor_value_info(name, elem, dims)


def model_of(nodes, inputs, outputs, value_info=(), initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers),
                              value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def const_of_shape(out_elem):
    """input (batch, seq, 5) -> ConstantOfShape(Shape(input)) without a `value`."""
    nodes = [helper.make_node("Shape", ["input"], ["shape"]),
             helper.make_node("ConstantOfShape", ["shape"], ["output"])]
    return model_of(nodes, [vi("input", F, ["batch", "seq", 5])],
                    [vi("output", out_elem, ["batch", "seq", 5])])


def value_of(model):
    node = next(n for n in model.graph.node if n.op_type == "ConstantOfShape")
    return onnx.numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))


def test_constant_of_shape_gets_a_float32_zero():
    out = normalize(const_of_shape(F), SPEC)
    value = value_of(out)
    assert value.dtype == np.float32 and value.tolist() == [0.0]


def test_constant_of_shape_follows_its_declared_output_type():
    value = value_of(normalize(const_of_shape(TensorProto.INT64), SPEC))
    assert value.dtype == np.int64 and value.tolist() == [0]


def test_existing_value_is_kept():
    model = const_of_shape(F)
    node = model.graph.node[1]
    node.attribute.append(helper.make_attribute(
        "value", helper.make_tensor("v", F, [1], [2.5])))
    assert value_of(normalize(model, SPEC)).tolist() == [2.5]


def if_model():
    """If(cond) whose branches declare outputs and value_info with exporter symbols (s77)."""
    def branch(name, op):
        return helper.make_graph(
            [helper.make_node(op, ["input"], ["t"]), helper.make_node("Identity", ["t"], [name])],
            name, [], [vi(name, F, ["s77", "seq", 5])], value_info=[vi("t", F, ["s11", "seq", 5])])
    nodes = [helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["output"], then_branch=branch("a", "Relu"),
                              else_branch=branch("b", "Neg"))]
    return model_of(nodes, [vi("input", F, ["batch", "seq", 5])],
                    [vi("output", F, ["batch", "seq", 5])],
                    value_info=[vi("total", F, []), vi("cond", TensorProto.BOOL, [])],
                    initializers=[helper.make_tensor("zero", F, [], [0.0])])


def test_foreign_symbols_are_cleared_everywhere():
    model = if_model()
    model.graph.value_info.append(vi("stray", F, ["s5", 3]))   # top level too
    assert {"s77", "s11", "s5"} <= symbols(model)
    out = normalize(model, SPEC)
    assert symbols(out) == {"batch", "seq"}
    branch = out.graph.node[2].attribute[0].g
    assert [d.dim_param or d.dim_value or None for d in
            branch.output[0].type.tensor_type.shape.dim] == [None, "seq", 5]


def test_subgraph_value_info_is_removed_and_the_graph_still_runs():
    import onnxruntime as ort
    out = normalize(if_model(), SPEC)
    for node in out.graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                assert len(attr.g.value_info) == 0
    assert len(out.graph.value_info) == 2                      # top level kept
    x = np.arange(30, dtype=np.float32).reshape(2, 3, 5) - 10
    session = ort.InferenceSession(out.SerializeToString())
    np.testing.assert_array_equal(session.run(None, {"input": x})[0], np.maximum(x, 0))


def test_checker_failure_is_an_export_error():
    model = model_of([helper.make_node("Relu", ["nowhere"], ["output"])],
                     [vi("input", F, ["batch", "seq", 5])], [vi("output", F, ["batch", "seq", 5])])
    with pytest.raises(ExportError, match="checker rejects"):
        normalize(model, SPEC)


def test_strict_shape_inference_failure_is_an_export_error():
    """A MatMul of (batch, seq, 5) by (4, 3) cannot be typed (full_check already runs
    shape inference strictly; normalize's own strict pass backs it up)."""
    model = model_of([helper.make_node("MatMul", ["input", "w"], ["output"])],
                     [vi("input", F, ["batch", "seq", 5])], [vi("output", F, ["batch", "seq", 3])],
                     initializers=[helper.make_tensor("w", F, [4, 3], [0.0] * 12)])
    with pytest.raises(ExportError, match="Incompatible dimensions"):
        normalize(model, SPEC)
