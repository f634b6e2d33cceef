"""One runner per runtime, all with the same call: `runner.run(feeds) -> outputs`.

feeds and outputs are `{tensor name: numpy array}` keyed by the spec's input/output names,
so verify, bench and predict treat eager PyTorch, TorchScript and ONNX Runtime alike.
`open_runners` checks the manifest before it loads any artifact.

    >>> runners = open_runners(Path("exported/classifier"), ("onnx",), device="cpu")
    >>> runners[0].run({"input": x})["output"].shape       # x: (batch, seq, 5) float32
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PipelineError, first_line
from .specs import ModelSpec

RUNTIMES = ("torch", "torchscript", "onnx")
ARTIFACTS = {"torchscript": "model.pt", "onnx": "model.onnx"}


@dataclass
class Runner:
    name: str                  # "torch" | "torchscript" | "onnx"
    spec: ModelSpec
    provider: str = "cpu"      # torch device, or the ORT execution provider really in use
    threads: int | None = None
    impl: object = field(default=None, repr=False)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def on_cuda(provider: str) -> bool:
    return provider.lower().startswith("cuda")


class TorchRunner(Runner):
    """Eager PyTorch module (the reference) or a loaded TorchScript module."""

    def run(self, feeds):
        import torch
        device = "cuda" if on_cuda(self.provider) else "cpu"
        x = torch.from_numpy(np.ascontiguousarray(feeds[self.spec.input_name])).to(device)
        with torch.inference_mode():
            y = self.impl(x)
        return {self.spec.output_name: y.cpu().numpy()}


class OnnxRuntimeRunner(Runner):
    def run(self, feeds):
        outputs = self.impl.run([self.spec.output_name], feeds)
        return {self.spec.output_name: outputs[0]}


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


def ort_session(path: Path, device: str, threads: int | None = None):
    """An InferenceSession on `device`; refuses a silent fallback from CUDA to CPU."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
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


def load_runner(runtime: str, spec: ModelSpec, path: Path, device: str = "cpu",
                threads: int | None = None) -> Runner:
    """Load one artifact: `path` is the model folder for "torch" (its weights), else the file.

    This trusts the file: callers check the manifest first (see `open_runners`).
    """
    import torch

    torch_device = "cuda" if device == "cuda" else "cpu"
    if threads:
        torch.set_num_threads(threads)
    if runtime == "torch":
        from .checkpoint import load_weights
        model = load_weights(path, spec).to(torch_device)
        return TorchRunner("torch", spec, torch_device, threads, model)
    if runtime == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location=torch_device).eval()
        except (RuntimeError, ValueError) as exc:
            raise PipelineError(f"{path}: torch cannot load it "
                                f"({first_line(exc)})") from None
        return TorchRunner("torchscript", spec, torch_device, threads, module)
    if runtime == "onnx":
        session = ort_session(path, device, threads)
        # The provider the session really uses (ORT falls back silently), e.g. CPUExecutionProvider
        return OnnxRuntimeRunner("onnx", spec, session.get_providers()[0], threads, session)
    raise PipelineError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")


def open_runners(model_dir: Path, runtimes: tuple[str, ...], device: str = "cpu",
                 threads: int | None = None) -> list[Runner]:
    """Check the manifest, then open each runtime's runner for the model in `model_dir`."""
    from .checkpoint import read_config
    from .manifest import check_manifest

    check_manifest(model_dir, require=tuple(ARTIFACTS[r] for r in runtimes if r in ARTIFACTS))
    spec = read_config(model_dir)["recipe"].model
    return [load_runner(r, spec, model_dir / ARTIFACTS[r] if r in ARTIFACTS else model_dir,
                        device, threads) for r in runtimes]
