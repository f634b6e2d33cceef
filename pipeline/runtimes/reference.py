"""The ONNX reference evaluator (`onnx.reference.ReferenceEvaluator`) on model.onnx.

The executable form of the ONNX specification, in numpy: each node is a Python call, each
Scan step too. Slow in general, but our graphs are small: measured (one thread) ~3.5 ms at
64 x 70, ~7-10 ms at 512 x 100 and 64-90 ms at 13-64 x 2048, i.e. 5-30x ONNX Runtime. So
verify runs it on the whole shape matrix (each runtime's verification.json entry lists the
shapes it ran) and bench keeps it in its default set.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner


class ReferenceRunner(Runner):
    def run(self, feeds):
        values = self.impl.run(list(self.outputs), {n: feeds[n] for n in self.inputs})
        return dict(zip(self.outputs, values))


def load_reference(spec: ModelSpec, path: Path, threads: int | None = None) -> ReferenceRunner:
    from onnx.reference import ReferenceEvaluator
    try:
        evaluator = ReferenceEvaluator(str(path))
    except Exception as exc:  # onnx raises DecodeError, RuntimeError, NotImplementedError
        raise PipelineError(f"{path}: the ONNX reference evaluator cannot load it "
                            f"({first_line(exc)})") from None
    return ReferenceRunner("onnx-reference", spec, "numpy", 1, evaluator,
                           inputs=list(evaluator.input_names),
                           outputs=list(evaluator.output_names))
