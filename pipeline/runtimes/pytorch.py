"""Eager PyTorch (the reference, rebuilt from the weights) and TorchScript (model.pt)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PipelineError, first_line
from ..specs import ModelSpec
from .base import Runner, on_cuda


class TorchRunner(Runner):
    """Eager PyTorch module (the reference) or a loaded TorchScript module."""

    def run(self, feeds):
        import torch
        device = "cuda" if on_cuda(self.provider) else "cpu"
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(device) for n in self.inputs]
        with torch.inference_mode():
            y = self.impl(*args)
        ys = y if isinstance(y, tuple) else (y,)
        return {name: t.cpu().numpy() for name, t in zip(self.outputs, ys)}


def load_eager(spec: ModelSpec, model_dir: Path, device: str) -> TorchRunner:
    from ..checkpoint import load_weights
    return TorchRunner("torch", spec, device, None, load_weights(model_dir, spec).to(device))


def load_torchscript(spec: ModelSpec, path: Path, device: str) -> TorchRunner:
    import torch
    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as exc:
        raise PipelineError(f"{path}: torch cannot load it ({first_line(exc)})") from None
    return TorchRunner("torchscript", spec, device, None, module)


class Float64Runner(TorchRunner):
    """Eager model in float64; float feeds are widened (exactly) before the call."""

    def run(self, feeds):
        return super().run({n: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f"
                            else v for n, v in feeds.items()})


def float64_twin(runner: TorchRunner) -> Float64Runner:
    """A float64 copy of an eager runner: the near-exact result that eager float32's own
    drift is measured against (see pipeline/compare.py)."""
    import copy
    return Float64Runner("torch-float64", runner.spec, runner.provider, runner.threads,
                         copy.deepcopy(runner.impl).double(), inputs=runner.inputs,
                         outputs=runner.outputs, precision="float64")
