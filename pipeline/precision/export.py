"""export --precision: the variants' files, written beside the fp32 ones, and their entry
in the manifest.

    names = variant_files(spec, ("fp32", "int8"))          # files to add to the manifest
    entry = write_variants(spec, precisions, fp32, temps)   # manifest["precisions"]

Each variant writes from the fp32 ONNX files that just passed the self-check (int8 and
fp16 rewrite them; bf16 writes OpenVINO IR of model.onnx's native branch and of the stream
file, split hi/lo; an IR's .bin is not loaded on its own), then each written file must load
and give finite outputs of the contract's shapes (its accuracy is verify's budget gate, not
this; a bf16 file is loaded in f32 where the CPU has no bf16 units).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ExportError, first_line
from . import variant

FP32_FILES = {"model": "model.onnx", "stream": "model_stream.onnx"}


def variant_files(spec, precisions) -> list[str]:
    return [f for p in precisions if p != "fp32" for f in variant(p).files(spec).values()]


def every_variant_file(spec) -> list[str]:
    """The files any precision variant of `spec` writes: those an export without it leaves
    behind from an earlier one (export removes them, so the folder holds what its manifest
    lists)."""
    from . import PRECISIONS
    return variant_files(spec, PRECISIONS)


def write_variants(spec, precisions, fp32: dict[str, Path], temps: dict[str, Path]) -> dict:
    """Write every variant's files to `temps` ({file name: temp path}); the manifest entry."""
    entries = {}
    for name in precisions:
        if name == "fp32":
            continue
        v = variant(name)
        files = v.files(spec)
        chosen = v.write(spec, fp32, {kind: temps[f] for kind, f in files.items()})
        if v.device == "cpu":
            written = {kind: temps[f] for kind, f in files.items()}
            for kind, f in files.items():
                if kind in ("model", "stream"):        # not an IR's weights (.bin)
                    _smoke(v, spec, temps[f], kind == "stream", f, written)
        entries[name] = {"files": files, "runtimes": list(v.runtimes), "device": v.device,
                         "summary": v.summary, "skipped": v.missing(spec), **chosen}
        runs = {k: FP32_FILES[k] for k in v.fp32_kinds if k in fp32}
        if runs:          # a variant that runs an fp32 file as it is (none today)
            entries[name]["runs"] = runs
    return entries


def _smoke(v, spec, path: Path, stream: bool, name: str, written: dict) -> None:
    """The file loads in its runtime and answers at two shapes with finite outputs."""
    from ..inputs import model_feeds
    rng = np.random.default_rng(0)
    runtime = v.runtimes[0]
    try:
        runner = v.smoke_load(runtime, spec, path, stream, written)
        for batch, seq in ((1, spec.example_seq), (64, 10 * spec.example_seq)):
            feeds = model_feeds(spec, rng, batch, seq)     # ids in the vocabulary, lengths
            if stream:
                runner.inputs = tuple(t.name for t in spec.stream_inputs)
                runner.outputs = tuple(t.name for t in spec.stream_outputs)
                feeds[spec.lengths_name] = np.full(batch, seq, np.int64)
                feeds.update({t.name: np.zeros((batch, *t.shape[1:]), np.float32)
                              for t in spec.stream_inputs[2:]})
            y = runner.run(feeds)[spec.output_name]
            # (batch, O), or (batch, seq, O) for a chain's per-step output
            want = tuple({"batch": batch, "seq": seq}.get(a, a) for a in spec.output.shape)
            if y.shape != want or not np.isfinite(y).all():
                raise ValueError(f"output {y.shape}, finite: {bool(np.isfinite(y).all())}")
    except Exception as exc:
        raise ExportError(f"{spec.name} {name} ({v.name} on {runtime}): fails its self-check: "
                          f"{first_line(exc)}") from None
