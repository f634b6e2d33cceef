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


F32_ROUNDOFF = 2.0 ** -24      # float32 unit roundoff: one rounding's relative error, at most


def float64_models(module, siblings: int = 2, seed: int = 0) -> list:
    """[`module` in float64, then `siblings` float64 copies whose every parameter is scaled
    by (1 +- F32_ROUNDOFF), random signs]: the exact result, and where the same model lands
    after one float32-sized rounding of its weights. Their spread from eager float32 is how
    far an honest float32 implementation may land (compare.py)."""
    import copy

    import torch
    exact = copy.deepcopy(module).double().eval()
    models = [exact]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(siblings):
        sibling = copy.deepcopy(exact)
        with torch.no_grad():
            for p in sibling.parameters():
                signs = torch.randint(0, 2, p.shape, generator=generator, dtype=p.dtype) * 2 - 1
                p.mul_(1 + F32_ROUNDOFF * signs)
        models.append(sibling)
    return models


class Float64Runner(TorchRunner):
    """Eager model in float64 (impl: the list from `float64_models`); float feeds are widened
    exactly. run() gives the exact result, spread() every model's."""

    def spread(self, feeds, count: int | None = None) -> list[dict]:
        wide = {n: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v
                for n, v in feeds.items()}
        models, results = self.impl, []
        try:
            for model in models[:count]:
                self.impl = model
                results.append(super().run(wide))
        finally:
            self.impl = models
        return results

    def run(self, feeds):
        return self.spread(feeds, 1)[0]


def float64_twin(runner: TorchRunner, siblings: int = 2) -> Float64Runner:
    """A float64 copy of an eager runner plus its perturbed siblings (see float64_models)."""
    return Float64Runner("torch-float64", runner.spec, runner.provider, runner.threads,
                         float64_models(runner.impl, siblings), inputs=runner.inputs,
                         outputs=runner.outputs, precision="float64")
