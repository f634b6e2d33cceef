"""One runner per runtime, all with the same call: `runner.run(feeds) -> outputs`.

feeds and outputs are `{tensor name: numpy array}` keyed by the spec's input/output names,
so verify, bench and predict treat every runtime alike. One module per runtime; each
imports its runtime inside its loader, so importing this package stays cheap.
`open_runners` checks the manifest before it loads any artifact. The stream artifacts
(STREAM_ARTIFACTS, model_stream.*) load through `load_stream_runner` / `open_stream_runners`:
the same runners, taking (input, lengths, states) and returning (output, states) by name.

    >>> runners = open_runners(Path("exported/classifier"), ("onnx",), device="cpu")
    >>> runners[0].run({"input": x})["output"].shape       # x: (batch, seq, 5) float32

Runtimes: torch (eager, the reference), torchscript (model.pt), and four that load
model.onnx: onnx (ONNX Runtime), openvino, tract and onnx-reference (the ONNX reference
evaluator). The last three come with the optional extra `pip install '.[runtimes]'`; a
missing one is a PipelineError naming that command, never a silent skip.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError
from ..specs import ModelSpec
from .base import Runner, on_cuda
from .ort import resolve_device

__all__ = ["ARTIFACTS", "CROSS_RUNTIMES", "DEFAULT_VERIFY", "RUNTIMES", "STREAM_ARTIFACTS",
           "Runner", "artifact", "installed", "load_runner", "load_stream_runner", "on_cuda",
           "open_runners", "open_stream_runners", "require_stream", "resolve_device",
           "runtime_version", "select_runtimes"]

RUNTIMES = ("torch", "torchscript", "onnx", "openvino", "tract", "onnx-reference")
# The files the export stage writes, by the runtime that proves each; "torch" loads the weights.
ARTIFACTS = {"torchscript": "model.pt", "onnx": "model.onnx"}
# The stream artifacts (issue 13): (input, lengths, states) -> (output, states); "torch" is
# the eager row-by-row reference (pipeline.families.StreamReference) from the weights.
STREAM_ARTIFACTS = {"torchscript": "model_stream.pt", "onnx": "model_stream.onnx"}
# The runtimes of the optional extra, and the distribution each is imported from.
CROSS_RUNTIMES = ("openvino", "tract", "onnx-reference")
PACKAGES = {"torch": "torch", "torchscript": "torch", "onnx": "onnxruntime",
            "openvino": "openvino", "tract": "tract", "onnx-reference": "onnx"}
DEFAULT_VERIFY = ("torchscript", "onnx")
INSTALL_HINT = "pip install '.[runtimes]' (or: make crossval)"


def artifact(runtime: str, stream: bool = False) -> str | None:
    """The model-folder file `runtime` loads (None for eager torch: the weights); the ONNX
    runtimes (onnx, openvino, tract, onnx-reference) all load the ONNX file."""
    files = STREAM_ARTIFACTS if stream else ARTIFACTS
    return None if runtime == "torch" else files.get(runtime, files["onnx"])


def installed(runtime: str) -> bool:
    from importlib import util
    module = {"torchscript": "torch", "onnx": "onnxruntime", "onnx-reference": "onnx"}.get(
        runtime, runtime)
    return util.find_spec(module) is not None


def runtime_version(runtime: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(PACKAGES[runtime])
    except metadata.PackageNotFoundError:
        return metadata.version("onnxruntime-gpu") if runtime == "onnx" else None


def select_runtimes(names: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    """Expand "all" (every runtime but eager torch, the reference), drop repeats, and
    refuse one that is not installed before anything is loaded (PipelineError)."""
    chosen = tuple(dict.fromkeys(
        r for n in (names or default) for r in (RUNTIMES[1:] if n == "all" else (n,))))
    for runtime in chosen:
        if runtime not in RUNTIMES:
            raise PipelineError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
        if not installed(runtime):
            raise PipelineError(f"runtime {runtime!r} is not installed (package "
                                f"{PACKAGES[runtime]}): {INSTALL_HINT}")
    return chosen


def load_runner(runtime: str, spec: ModelSpec, path: Path, device: str = "cpu",
                threads: int | None = None, shapes_vary: bool = False) -> Runner:
    """Load one artifact: `path` is the model folder for "torch" (its weights), else the file.
    shapes_vary: a hint that calls will bring many input shapes (ORT then plans no memory
    pattern per shape); other runtimes ignore it.

    This trusts the file: callers check the manifest first (see `open_runners`).
    """
    if runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if runtime in CROSS_RUNTIMES:
        select_runtimes((runtime,), ())       # PipelineError naming the install if missing
        from .openvino import load_openvino
        from .reference import load_reference
        from .tract import load_tract
        loader = {"openvino": load_openvino, "tract": load_tract,
                  "onnx-reference": load_reference}[runtime]
        return loader(spec, path, threads)
    if runtime == "onnx":
        from .ort import load_ort
        return load_ort(spec, path, device, threads, shapes_vary)
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
                 threads: int | None = None, shapes_vary: bool = False) -> list[Runner]:
    """Check the manifest, then open each runtime's runner for the model in `model_dir`."""
    from ..checkpoint import read_config
    from ..manifest import check_manifest

    files = [artifact(r) for r in runtimes]
    check_manifest(model_dir, require=tuple(dict.fromkeys(f for f in files if f)))
    spec = read_config(model_dir)["recipe"].model
    return [load_runner(r, spec, model_dir / f if f else model_dir, device, threads,
                        shapes_vary) for r, f in zip(runtimes, files)]


def require_stream(spec: ModelSpec) -> None:
    """PipelineError unless the model has stream artifacts (a bidirectional one has none)."""
    if not spec.has_stream and not spec.layers:
        raise PipelineError(f"{spec.name} is bidirectional: it has no stream artifact (its "
                            "backward direction needs the whole sequence)")
    if not spec.has_stream:
        raise PipelineError(f"{spec.name} has no stream artifact: {spec.stream_refusal}")


def load_stream_runner(runtime: str, spec: ModelSpec, path: Path, device: str = "cpu",
                       threads: int | None = None) -> Runner:
    """Load one stream artifact (or, for "torch", the eager reference from the model folder);
    its runner takes and returns the spec's stream tensors by name."""
    require_stream(spec)
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
    from .pytorch import TorchRunner
    if spec.layers:
        from ..network import ChainStreamReference as StreamReference
    else:
        from ..families import StreamReference
    return TorchRunner("torch", spec, "cpu", None, StreamReference(model, spec),
                       tuple(t.name for t in spec.stream_inputs),
                       tuple(t.name for t in spec.stream_outputs))


def open_stream_runners(model_dir: Path, runtimes: tuple[str, ...], device: str = "cpu",
                        threads: int | None = None) -> list[Runner]:
    """`open_runners` for the stream artifacts: manifest check first, then load."""
    from ..checkpoint import read_config
    from ..manifest import check_manifest, require_listed

    files = [artifact(r, stream=True) for r in runtimes]
    manifest = check_manifest(model_dir)
    spec = read_config(model_dir)["recipe"].model
    require_stream(spec)        # the clear reason before "does not list model_stream.onnx"
    require_listed(model_dir, manifest, [f for f in files if f])
    return [load_stream_runner(r, spec, model_dir / f if f else model_dir, device, threads)
            for r, f in zip(runtimes, files)]
