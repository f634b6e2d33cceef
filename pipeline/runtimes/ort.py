"""ONNX Runtime (model.onnx): CPU, or the CUDA execution provider where one is present."""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner


class OnnxRuntimeRunner(Runner):
    def run(self, feeds):
        outputs = self.impl.run(list(self.outputs), {n: feeds[n] for n in self.inputs})
        return dict(zip(self.outputs, outputs))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when onnxruntime has the CUDA provider and a GPU answers, else 'cpu'."""
    if device not in ("auto", "cpu", "cuda"):
        raise PipelineError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    import onnxruntime as ort
    has_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_ep:
        raise PipelineError("--device cuda: onnxruntime has no CUDAExecutionProvider "
                            "(install onnxruntime-gpu on a machine with an NVIDIA GPU)")
    return "cuda" if has_ep else "cpu"


def ort_session(path: Path, device: str, threads: int | None = None,
                shapes_vary: bool = False):
    """An InferenceSession on `device`; refuses a silent fallback from CUDA to CPU.
    shapes_vary: nearly every call has a new input shape (score's exact-length groups), so
    no memory pattern is recorded per shape (~6% of score's inference time, issue 23)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = not shapes_vary
    options.log_severity_level = 3   # failures still raise; don't also print them to stderr
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # TF32 would round matmul inputs to 10 mantissa bits; keep true float32 on CUDA.
    wanted = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"] \
        if device == "cuda" else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise PipelineError(f"{path}: onnxruntime cannot load it ({first_line(exc)})") \
            from None
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise PipelineError(f"{path}: onnxruntime fell back to {session.get_providers()} "
                            "instead of CUDA (is the CUDA runtime installed?)")
    return session


def load_ort(spec: ModelSpec, path: Path, device: str, threads: int | None,
             shapes_vary: bool = False) -> OnnxRuntimeRunner:
    session = ort_session(path, device, threads, shapes_vary)
    # The provider the session really uses (ORT falls back silently), e.g. CPUExecutionProvider
    return OnnxRuntimeRunner("onnx", spec, session.get_providers()[0], threads, session)
