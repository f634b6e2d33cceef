"""The ONNX reference evaluator (`onnx.reference.ReferenceEvaluator`) on model.onnx.

The executable form of the ONNX specification, in numpy: each node is a Python call, each
Scan step too. Slow in general, but our graphs are small: measured (one thread) ~3.5 ms at
64 x 70, ~7-10 ms at 512 x 100 and 64-90 ms at 13-64 x 2048, i.e. 5-30x ONNX Runtime. So
verify runs it on the whole shape matrix (each runtime's verification.json entry lists the
shapes it ran) and bench keeps it in its default set.

One operator is replaced. onnx 1.23's GatherElements implements the gather with
`numpy.choose`, which takes at most 64 arrays, so it raises "Need at least 0 and at most 64
array objects" whenever the gathered axis has 64 entries or more (model_stream.onnx gathers
each row's last valid state along seq: any seq >= 64 failed). `GatherElements` below is
the operator's definition (output[i][j] = data[i][index[i][j]] along `axis`, negative
indices counted from the end) as `numpy.take_along_axis`, with no limit. The runner's
provider is "numpy", what executes every node (the evaluator has no execution providers).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner


class ReferenceRunner(Runner):
    def run(self, feeds):
        # its Sigmoid computes exp(-x) in float32 and warns on overflow at saturated gates;
        # the result is still 0 or 1, as it should be
        with np.errstate(over="ignore", invalid="ignore"):
            values = self.impl.run(list(self.outputs), {n: feeds[n] for n in self.inputs})
        return dict(zip(self.outputs, values))


def _gather_elements_class():
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):      # the class name is the op it replaces
        op_domain = ""

        def _run(self, data, indices, axis=0):
            axis = (axis or 0) % data.ndim
            indices = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, indices.astype(np.int64), axis=axis),)

    return GatherElements


def load_reference(spec: ModelSpec, path: Path, threads: int | None = None) -> ReferenceRunner:
    from onnx.reference import ReferenceEvaluator
    try:
        evaluator = ReferenceEvaluator(str(path), new_ops=[_gather_elements_class()])
    except Exception as exc:  # onnx raises DecodeError, RuntimeError, NotImplementedError
        raise PipelineError(f"{path}: the ONNX reference evaluator cannot load it "
                            f"({first_line(exc)})") from None
    return ReferenceRunner("onnx-reference", spec, "numpy", 1, evaluator,
                           inputs=list(evaluator.input_names),
                           outputs=list(evaluator.output_names))
