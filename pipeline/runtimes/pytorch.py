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
