"""A small ONNX graph builder: nodes, initializers and subgraphs written op by op.

    b = GraphBuilder()
    y = b.op("Gemm", [x, b.const(w), b.const(bias)], transB=1)
    model = b.model([input_info], [output_info(y, "output")])

The families (rnn.py, gru.py, lstm.py) write their ONNX translations with it: the native
recurrent operator or a `Scan` step made of plain ops. Every initializer lives in the
top graph (If branches and Scan bodies read them from the outer scope, as ONNX allows),
names are unique across all subgraphs, and an omitted optional input is "". Only
standard ONNX operators of opset 18 are written, so any conformant runtime can run it.
"""
from __future__ import annotations

import numpy as np

OPSET = 18
IR_VERSION = 8        # the IR of opset 18; onnxruntime 1.31 reads IR <= 13


class GraphBuilder:
    """Nodes of one graph; `sub()` makes a builder for an If branch or a Scan body."""

    def __init__(self, root: GraphBuilder | None = None):
        self.root = root or self
        self.nodes: list = []
        if root is None:
            self.initializers: list = []
            self._count = 0
            self._cache: dict = {}

    def fresh(self, hint: str) -> str:
        self.root._count += 1
        return f"{hint}_{self.root._count}"

    def op(self, op_type: str, inputs, outputs: int | list[str] = 1, **attrs):
        """Append a node; return its output name (or a tuple of names for several)."""
        from onnx import helper

        names = [self.fresh(op_type) for _ in range(outputs)] if isinstance(outputs, int) \
            else list(outputs)
        self.nodes.append(helper.make_node(op_type, [i or "" for i in inputs], names,
                                           name=self.fresh(f"n_{op_type}"), **attrs))
        return names[0] if len(names) == 1 else tuple(names)

    def ops(self, op_type: str, inputs, outputs: int, **attrs) -> list[str]:
        """`op` for a node of several outputs (or a count known only at run time): a list."""
        res = self.op(op_type, inputs, outputs, **attrs)
        return [res] if isinstance(res, str) else list(res)

    def const(self, value, hint: str = "w", dtype=np.float32) -> str:
        """An initializer of the top graph holding `value` (cached by value for small ints)."""
        from onnx import numpy_helper

        array = np.array(value, dtype=dtype, order="C")     # keeps a 0-d scalar 0-d
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 16 else None
        if key is not None and key in self.root._cache:
            return self.root._cache[key]
        name = self.fresh(hint)
        self.root.initializers.append(numpy_helper.from_array(array, name))
        if key is not None:
            self.root._cache[key] = name
        return name

    def ints(self, *values: int) -> str:
        """A 1-D int64 initializer (shapes, axes, indices)."""
        return self.const(list(values), "i", np.int64)

    def sub(self) -> GraphBuilder:
        return GraphBuilder(self.root)

    def graph(self, name: str, inputs: list, outputs: list, initializers: bool = False):
        from onnx import helper
        return helper.make_graph(self.nodes, name, inputs, outputs,
                                 initializer=self.initializers if initializers else None)

    def model(self, inputs: list, outputs: list, name: str = "main", opset: int = OPSET,
              ir_version: int = IR_VERSION):
        from onnx import helper
        graph = self.graph(name, inputs, outputs, initializers=True)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                 ir_version=ir_version, producer_name="rnn-pipeline")


def value_info(name: str, shape=None, dtype=np.float32):
    """A typed graph input/output; shape None for subgraph values of unknown shape."""
    from onnx import helper
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                         shape)
