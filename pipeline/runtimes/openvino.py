"""OpenVINO (model.onnx read by OpenVINO's ONNX frontend), CPU plugin, float32 forced.

OpenVINO's CPU plugin picks its inference precision from the hardware: on a CPU with
AVX512-BF16 or AMX it defaults to bf16, which put the classifier 4.2e-2 off at batch 64
(issue 11). A validator must judge the float32 model that was exported, so the runner
asks for INFERENCE_PRECISION_HINT=f32 and records the precision the compiled model
reports back (`Runner.precision`); verify fails a runner that did not get f32.

Output names: OpenVINO folds an Identity into the node before it and the graph output then
carries that node's internal name too, first (2026.4: the stream graphs' `h_out` answered
`get_any_name()` with `Reshape_24`). The runner lists each output by its contract name
(`contract_name`), so callers find `output`, `h_out`, ... by name; the chains' graphs
(export/chain_graph.py) write their outputs without an Identity, so OpenVINO sees only
the contract names there.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner


class OpenVinoRunner(Runner):
    def run(self, feeds):
        request = self.impl
        request.infer({n: feeds[n] for n in self.inputs})
        return {n: request.get_tensor(n).data.copy() for n in self.outputs}


def contract_name(port, spec: ModelSpec) -> str:
    """The output's contract name where it has one among its names, else any name."""
    contract = [t.name for t in (spec.output, *spec.stream_outputs)]
    names = port.get_names()
    return next((n for n in contract if n in names), port.get_any_name())


def load_openvino(spec: ModelSpec, path: Path, threads: int | None = None,
                  hint: str = "f32") -> OpenVinoRunner:
    """`hint`: f32 (what verify judges), or bf16 for the bf16 precision variant
    (pipeline/precision/bf16.py)."""
    import openvino as ov
    config = {"INFERENCE_PRECISION_HINT": hint,
              "NUM_STREAMS": 1,                    # one request at a time, like the others
              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except RuntimeError as exc:
        raise PipelineError(f"{path}: OpenVINO cannot load it ({first_line(exc)})") from None
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()   # "f32"
    used_threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    runner = OpenVinoRunner(
        "openvino", spec, "CPU", used_threads or threads, compiled.create_infer_request(),
        inputs=[p.get_any_name() for p in compiled.inputs],
        outputs=[contract_name(p, spec) for p in compiled.outputs])
    runner.precision = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}.get(
        precision, precision)
    return runner
