"""What every runtime's runner is: `runner.run(feeds) -> outputs`, keyed by tensor name."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..specs import ModelSpec

if TYPE_CHECKING:      # numpy only in annotations: the CLI imports this package for --help
    import numpy as np


@dataclass
class Runner:
    name: str                  # a key of pipeline.runtimes.RUNTIMES, e.g. "onnx"
    spec: ModelSpec
    provider: str = "cpu"      # torch device, the ORT execution provider really in use, ...
    threads: int | None = None
    impl: object = field(default=None, repr=False)
    # Tensor names in the artifact's positional order; default: the spec's one input and
    # one output. An artifact with more (state in, state out) names them all here.
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    precision: str = "float32"   # arithmetic the runtime really uses (OpenVINO reads it back)

    def __post_init__(self):
        self.inputs = tuple(self.inputs) or tuple(t.name for t in self.spec.inputs)
        self.outputs = tuple(self.outputs) or (self.spec.output_name,)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def on_cuda(provider: str) -> bool:
    return provider.lower().startswith("cuda")
