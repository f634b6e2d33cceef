"""Precision variants: what each is, which files it needs, which runtime runs it.

    >>> from pipeline.precision import variant, parse_precisions
    >>> parse_precisions("fp32,bf16,int8")           # ('fp32', 'bf16', 'int8')
    >>> v = variant("int8")
    >>> v.files(spec)          # {'model': 'model_int8.onnx', 'stream': 'model_stream_int8.onnx'}
    >>> v.runtimes             # ('onnx',): the runtimes that run it
    >>> runner = v.load("onnx", spec, model_dir / "model_int8.onnx", threads=1)

fp32 is the exported model itself (model.onnx, model.pt, ...; every runtime) and the
reference every other variant is measured against. A variant is one module (int8.py,
bf16.py, fp16.py) with a `Variant` subclass, registered in VARIANTS:

  int8  files rewritten for ONNX Runtime's integer kernels (DynamicQuantizeLSTM,
        DynamicQuantizeMatMul), stateless and stream; ORT only.
  bf16  model_bf16.xml/.bin and model_stream_bf16.xml/.bin (OpenVINO IR: model.onnx on
        its native recurrent operator at every batch, the input and head products split
        hi/lo, bf16_split.py; a chain's by bf16_chain.py), compiled by OpenVINO with the bf16
        inference hint (the CPU's AVX512_BF16 / AMX units). Where that is outside the
        default budget, the last layers, or every node, are kept f32 (ov_f32.py; the
        manifest's `f32_layers`).
  fp16  model_fp16.onnx (weights and arithmetic in float16, float32 at the edges) for
        ONNX Runtime's CUDA provider; written on any machine, run only where a GPU is.

Export writes a variant's files beside the fp32 ones (`export --precision`) and lists them
in the manifest under `precisions`; verify measures every (runtime, precision) pair against
eager fp32 and gates it by the accuracy budget (budget.py, gate.py); bench picks the
fastest pair within budget per shape (choice.py -> deployment.json).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PipelineError

if TYPE_CHECKING:
    from ..runtimes import Runner
    from ..specs import ModelSpec

PRECISIONS = ("fp32", "bf16", "int8", "fp16")
# The name a runner reports (Runner.precision) for each
ARITHMETIC = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8", "fp16": "float16"}


class Variant:
    """The interface; one subclass per module."""
    name: str = ""
    runtimes: tuple[str, ...] = ()      # the runtimes that run it
    device: str = "cpu"                 # where it runs: cpu | cuda
    summary: str = ""                   # one line for the card and the docs
    fp32_kinds: tuple[str, ...] = ()    # kinds of file it runs from the fp32 export as is

    def files(self, spec: ModelSpec) -> dict[str, str]:
        """{"model": file, "stream": file} that export writes for it (none: it runs the
        fp32 files); no stream file for a model without a stream form."""
        return {}

    def missing(self, spec: ModelSpec) -> dict[str, str]:
        """{kind: reason} for each kind of file this variant has no form of, for this model."""
        return {}

    def write(self, spec: ModelSpec, fp32: dict[str, Path], paths: dict[str, Path]) -> dict:
        """Write `paths` ({kind: path}, from files()) from the fp32 ONNX files ({kind: path});
        return what it chose on this machine, added to the manifest's entry (int8: the
        weights' type, which depends on the CPU; bf16: the layers kept f32). A kind it has
        no form of is left out by files() and named by missing(); one it fails to write is
        an ExportError."""
        return {}

    def artifact(self, entry: dict, stream: bool) -> str | None:
        """The file a runtime loads, from the manifest's entry for this variant."""
        return entry.get("files", {}).get("stream" if stream else "model")

    def load(self, runtime: str, spec: ModelSpec, path: Path, threads: int | None = None,
             stream: bool = False) -> Runner:
        raise NotImplementedError

    def smoke_load(self, runtime: str, spec: ModelSpec, path: Path, stream: bool,
                   files: dict[str, Path] | None = None) -> Runner:
        """The runner export's self-check uses (the variant's own, unless it cannot run
        on this machine and another load still proves the file sound); `files`: every
        file just written for it, {kind: path} (an IR's .bin beside its .xml)."""
        return self.load(runtime, spec, path, threads=1, stream=stream)

    def unavailable(self, runtime: str) -> str | None:
        """Why `runtime` cannot run this variant on this machine, or None."""
        from ..runtimes import installed
        if runtime not in self.runtimes:
            return f"{self.name} runs on {', '.join(self.runtimes)} only"
        if not installed(runtime):
            return f"runtime {runtime} is not installed"
        return None


def _variants() -> dict[str, Variant]:
    from .bf16 import BF16
    from .fp16 import FP16
    from .int8 import INT8
    return {v.name: v for v in (BF16, INT8, FP16)}


def variant(name: str) -> Variant:
    try:
        return _variants()[name]
    except KeyError:
        raise PipelineError(f"unknown precision {name!r}; choose from "
                            f"{', '.join(PRECISIONS)}") from None


def parse_precisions(text: str | tuple) -> tuple[str, ...]:
    """"fp32,bf16,int8" -> ('fp32', 'bf16', 'int8'); fp32 always first; unknown refused."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in items if n.strip()]
    for n in names:
        if n not in PRECISIONS:
            raise PipelineError(f"unknown precision {n!r}; choose from {', '.join(PRECISIONS)}")
    return tuple(dict.fromkeys(["fp32", *names]))


def pairs(manifest: dict) -> list[tuple[str, str]]:
    """(runtime, precision) of every variant the manifest lists (fp32 not included)."""
    return [(r, name) for name in manifest.get("precisions", {})
            for r in variant(name).runtimes]


def parse_pair(text: str) -> tuple[str, str]:
    """"openvino:bf16" -> ("openvino", "bf16"); a bare runtime means fp32."""
    runtime, _, precision = text.partition(":")
    precision = (precision or "fp32").strip().lower()
    if precision not in PRECISIONS:
        raise PipelineError(f"{text!r}: unknown precision {precision!r}; choose from "
                            f"{', '.join(PRECISIONS)}")
    return runtime.strip(), precision


def graphs(graph):
    """`graph` and every subgraph nested in its nodes (If branches, Scan bodies): the variants
    rewrite or read nodes and weights wherever they sit."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == a.GRAPH:
                yield from graphs(a.g)
