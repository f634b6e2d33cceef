"""The ONNX reference evaluator (`onnx.reference.ReferenceEvaluator`) on model.onnx.

The executable form of the ONNX specification, in numpy: slow (each node is a Python
call, each Scan/RNN step too), so verify runs it only at shapes up to
`REFERENCE_MAX_STEPS` batch x seq and records which shapes it ran.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner

# batch x seq above which the evaluator is not run (measured: ~30-60 ms per 1000 steps of
# the Scan branch; 64 x 70 takes about a second per call with both models).
REFERENCE_MAX_STEPS = 64 * 70


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
