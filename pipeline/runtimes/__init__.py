"""One runner per runtime, all with the same call: `runner.run(feeds) -> outputs`.

feeds and outputs are `{tensor name: numpy array}` keyed by the spec's input/output names,
so verify, bench and predict treat every runtime alike. One module per runtime; each
imports its runtime inside its loader, so importing this package stays cheap.
`open_runners` checks the manifest before it loads any artifact. The stream artifacts
(STREAM_ARTIFACTS, model_stream.*) load through `load_stream_runner` / `open_stream_runners`:
the same runners, taking (input, lengths, h_in) and returning (output, h_out) by name.

    >>> runners = open_runners(Path("exported/classifier"), ("onnx",), device="cpu")
    >>> runners[0].run({"input": x})["output"].shape       # x: (batch, seq, 5) float32
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError
from ..specs import ModelSpec
from .base import Runner, on_cuda
from .ort import resolve_device

__all__ = ["ARTIFACTS", "RUNTIMES", "STREAM_ARTIFACTS", "Runner", "load_runner",
           "load_stream_runner", "on_cuda", "open_runners", "open_stream_runners",
           "resolve_device"]

RUNTIMES = ("torch", "torchscript", "onnx")
# The file each runtime loads from a model folder; "torch" loads the weights.
ARTIFACTS = {"torchscript": "model.pt", "onnx": "model.onnx"}
# The stream artifacts (issue 13): (input, lengths, h_in) -> (output, h_out); "torch" is the
# eager row-by-row reference (pipeline.export.stream.StreamReference) from the weights.
STREAM_ARTIFACTS = {"torchscript": "model_stream.pt", "onnx": "model_stream.onnx"}


def load_runner(runtime: str, spec: ModelSpec, path: Path, device: str = "cpu",
                threads: int | None = None) -> Runner:
    """Load one artifact: `path` is the model folder for "torch" (its weights), else the file.

    This trusts the file: callers check the manifest first (see `open_runners`).
    """
    if runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        from .ort import load_ort
        return load_ort(spec, path, device, threads)
    import torch

    from .pytorch import load_eager, load_torchscript
    if threads:
        torch.set_num_threads(threads)
    torch_device = "cuda" if device == "cuda" else "cpu"
    loader = load_eager if runtime == "torch" else load_torchscript
    runner = loader(spec, path, torch_device)
    runner.threads = threads
    return runner


def open_runners(model_dir: Path, runtimes: tuple[str, ...], device: str = "cpu",
                 threads: int | None = None) -> list[Runner]:
    """Check the manifest, then open each runtime's runner for the model in `model_dir`."""
    from ..checkpoint import read_config
    from ..manifest import check_manifest

    check_manifest(model_dir, require=tuple(ARTIFACTS[r] for r in runtimes if r in ARTIFACTS))
    spec = read_config(model_dir)["recipe"].model
    return [load_runner(r, spec, model_dir / ARTIFACTS[r] if r in ARTIFACTS else model_dir,
                        device, threads) for r in runtimes]


def load_stream_runner(runtime: str, spec: ModelSpec, path: Path, device: str = "cpu",
                       threads: int | None = None) -> Runner:
    """Load one stream artifact (or, for "torch", the eager reference from the model folder);
    its runner takes and returns the spec's stream tensors by name."""
    if runtime == "torch":
        from ..checkpoint import load_weights
        if threads:
            import torch
            torch.set_num_threads(threads)
        runner = stream_reference(load_weights(path, spec), spec)
        runner.threads = threads
    else:
        runner = load_runner(runtime, spec, path, device, threads)
    runner.inputs = tuple(t.name for t in spec.stream_inputs)
    runner.outputs = tuple(t.name for t in spec.stream_outputs)
    return runner


def stream_reference(model, spec: ModelSpec) -> Runner:
    """The eager stream reference (row by row, unpadded) around an eager `model`."""
    from ..export.stream import StreamReference
    from .pytorch import TorchRunner
    return TorchRunner("torch", spec, "cpu", None, StreamReference(model, spec),
                       tuple(t.name for t in spec.stream_inputs),
                       tuple(t.name for t in spec.stream_outputs))


def open_stream_runners(model_dir: Path, runtimes: tuple[str, ...], device: str = "cpu",
                        threads: int | None = None) -> list[Runner]:
    """`open_runners` for the stream artifacts: manifest check first, then load."""
    from ..checkpoint import read_config
    from ..manifest import check_manifest

    check_manifest(model_dir, require=tuple(STREAM_ARTIFACTS[r] for r in runtimes
                                            if r in STREAM_ARTIFACTS))
    spec = read_config(model_dir)["recipe"].model
    return [load_stream_runner(r, spec, model_dir / STREAM_ARTIFACTS[r]
                               if r in STREAM_ARTIFACTS else model_dir, device, threads)
            for r in runtimes]
