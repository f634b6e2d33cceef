"""Stage 2: export a trained model to TorchScript and ONNX, prove both, write the manifest.

    python -m pipeline export --model forecaster --opset 18
    python scripts/export.py

Writes `<out>/<model>/model.pt` and `model.onnx`, the stream artifacts `model_stream.pt` and
`model_stream.onnx` (stateful, length-aware; see stream.py; none for a bidirectional
model), then `manifest.json` last. No
artifact replaces the previous one until all have passed the self-check: each ONNX graph is
normalised for portability (normalize.py: typed ConstantOfShape values, no exporter
symbols, strict shape inference), passes `onnx.checker` (full_check), declares symbolic
`batch`/`seq` axes, loads in onnxruntime, and both artifacts match the eager model at
sequence lengths 1, the export example's and 10x it, at batch 1 and 64. A declared dynamic
axis proves nothing (an unrolled graph declares one too); only outputs at other lengths
do. The stream artifacts must match the eager row-by-row reference on ragged batches at
those shapes (lengths drawn below seq, garbage padding, random h_in) and on a sequence fed
in chunks with carried state.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..checkpoint import CONFIG, WEIGHTS, load_checkpoint, read_config
from ..compare import compare
from ..errors import ExportError, first_line
from ..inputs import model_feeds
from ..fsio import atomic_paths, json_bytes, model_lock, sweep_stale_temps
from ..manifest import MANIFEST, build_manifest
from ..provenance import source_commit, versions
from ..runtimes import ARTIFACTS, STREAM_ARTIFACTS, load_runner, load_stream_runner, \
    stream_reference
from ..specs import ModelSpec, to_dict

DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportConfig:
    model: str
    out: Path = Path("exported")
    opset: int = DEFAULT_OPSET
    # precision variants written beside the fp32 files (pipeline/precision); fp32 always
    precisions: tuple[str, ...] = ("fp32",)


def check_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(batch, seq) pairs every artifact must get right before it is accepted."""
    return [(b, s) for b in (1, 64) for s in (1, spec.example_seq, 10 * spec.example_seq)]


def export_torchscript(model, path: Path) -> None:
    import torch
    # Scripting (not tracing) keeps the forecaster's time loop a real loop over seq.
    # torch.jit is deprecated in favour of torch.export, but TorchScript remains the
    # format the pytorch Triton backend and C++ libtorch load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        save_scripted(torch.jit.script(model), path)


def save_scripted(module, path: Path) -> None:
    """torch.jit.save through a buffer: the same module gives the same bytes. Saved to a
    path, the archive's records are named after the file (a temp file named by the pid,
    atomic_path), and torch's serialization_id hashes those names, so every export
    changed model.pt and the manifest: a new build to verify and publish for nothing."""
    import io

    import torch
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    Path(path).write_bytes(buffer.getvalue())


def self_check(paths: dict[str, Path], spec: ModelSpec, model) -> list[dict]:
    """Run each artifact ({runtime: path}) against eager `model`; ExportError at a bad shape."""
    import torch

    rng = np.random.default_rng(0)
    tol = spec.tolerance("cpu")
    runners = [load_runner(runtime, spec, path) for runtime, path in paths.items()]
    rows = []
    for batch, seq in check_shapes(spec):
        feeds = model_feeds(spec, rng, batch, seq)      # ids in the vocabulary, lengths
        with torch.inference_mode():
            expected = model(*(torch.from_numpy(feeds[t.name]) for t in spec.inputs)).numpy()
        for runner in runners:
            try:
                actual = runner.run(feeds)[spec.output_name]
            except Exception as exc:  # an unrolled graph fails at seq 1 with a shape error
                raise ExportError(f"{spec.name} {runner.name}: fails at batch {batch}, seq {seq}: "
                                  f"{first_line(exc)}") from None
            c = compare(actual, expected, tol, spec.task == "classification")
            if not c.passed:
                raise ExportError(f"{spec.name} {runner.name}: wrong at batch {batch}, seq {seq}: "
                                  f"{c.reason} (max abs error {c.max_abs:.3g})")
            rows.append({"runtime": runner.name, "batch": batch, "seq": seq,
                         "max_abs": c.max_abs, "max_rel": c.max_rel})
    return rows


def stream_self_check(paths: dict[str, Path], spec: ModelSpec, model) -> list[dict]:
    """The stream artifacts ({runtime: path}) against the eager stream reference; ExportError
    at the first failing check (see verify_stream for what is checked)."""
    from ..verify_stream import stream_rows

    runners = [load_stream_runner(runtime, spec, path) for runtime, path in paths.items()]
    rows = stream_rows(spec, stream_reference(model, spec), runners, check_shapes(spec))
    for r in rows:
        if not r["passed"]:
            raise ExportError(f"{spec.name} {r['runtime']}: {r['check']} wrong at batch "
                              f"{r['batch']}, seq {r['seq']}: {r['reason']}")
    return rows


def main(config: ExportConfig, log: Callable[[str], None] = print,
         onnx_exporter: Callable | None = None) -> dict:
    """Export `config.model` from `<out>/<model>/`; return the manifest.

    `onnx_exporter(model, spec, path, opset)` replaces the ONNX exporter (tests pass a
    deliberately unrolled one to prove the self-check can fail).
    """
    from .normalize import normalize_file
    from .facts import describe
    from .onnx_graph import export_onnx
    from ..precision.export import every_variant_file, variant_files, write_variants
    from .stream import export_stream_onnx, export_stream_torchscript

    import torch

    onnx_exporter = onnx_exporter or export_onnx
    torch.set_num_threads(1)   # the eager references are tiny; see verify.main
    model_dir = Path(config.out) / config.model
    read_config(model_dir)    # a clear error (run train first) before the lock's mkdir
    with model_lock(model_dir):
        sweep_stale_temps(model_dir)   # left by a killed run; see fsio
        model, cfg = load_checkpoint(model_dir)
        spec = cfg["recipe"].model
        streams = STREAM_ARTIFACTS if spec.has_stream else {}
        if not spec.has_stream:
            why = spec.stream_refusal if spec.layers else \
                "bidirectional: the backward direction needs the whole sequence"
            log(f"{spec.name}: no stream artifacts ({why}); writing model.pt and model.onnx")
        precisions = config.precisions
        variants = variant_files(spec, precisions)      # precision variants' files
        names = [*ARTIFACTS.values(), *streams.values(), *variants, MANIFEST]
        # An earlier export's files this one does not write (a precision dropped, a stream
        # form gone): removed with the old manifest, so no file lies there unlisted.
        stale = [model_dir / n for n in (*STREAM_ARTIFACTS.values(), *every_variant_file(spec))
                 if n not in names and (model_dir / n).exists()]
        # All files go to temp files and are renamed into place together, manifest last,
        # only after every artifact passed the self-check and every byte was flushed.
        with atomic_paths(*(model_dir / name for name in names),
                          clear=(model_dir / MANIFEST, *stale) if stale else ()) as temps:
            tmp = dict(zip(ARTIFACTS, temps))
            stream = dict(zip(streams, temps[len(ARTIFACTS):len(ARTIFACTS) + len(streams)]))
            variant_tmp = dict(zip(variants, temps[len(ARTIFACTS) + len(streams):-1]))
            export_torchscript(model, tmp["torchscript"])
            onnx_exporter(model, spec, tmp["onnx"], config.opset)
            # portable to tract, OpenVINO, ... (normalize.py): every ONNX file goes through it
            normalize_file(tmp["onnx"], spec)
            graph = describe(tmp["onnx"], spec)
            rows = self_check(tmp, spec, model)
            extra, stream_checks = {}, []
            if stream:
                export_stream_torchscript(model, spec, stream["torchscript"])
                export_stream_onnx(model, spec, stream["onnx"], config.opset)
                normalize_file(stream["onnx"], spec)
                extra["onnx_stream"] = describe(stream["onnx"], spec, spec.stream_inputs,
                                                spec.stream_outputs)
                extra["stream_signature"] = {
                    "inputs": [to_dict(t) for t in spec.stream_inputs],
                    "outputs": [to_dict(t) for t in spec.stream_outputs]}
                stream_checks = stream_self_check(stream, spec, model)
            if variants or len(precisions) > 1:      # export --precision
                extra["precisions"] = write_variants(
                    spec, precisions, {"model": tmp["onnx"], **(
                        {"stream": stream["onnx"]} if stream else {})}, variant_tmp)
            manifest = build_manifest(
                model_dir, [WEIGHTS, CONFIG, *ARTIFACTS.values(), *streams.values(), *variants],
                sources={**{ARTIFACTS[r]: path for r, path in tmp.items()}, **variant_tmp,
                         **{STREAM_ARTIFACTS[r]: path for r, path in stream.items()}},
                model=spec.name,
                spec=to_dict(spec),      # a published version's contract travels with it
                signature={"inputs": [to_dict(t) for t in spec.inputs],
                           "outputs": [to_dict(spec.output)]},
                onnx=graph,
                **extra,
                self_check={"tolerance": to_dict(spec.tolerance("cpu")), "rows": rows,
                            "stream_rows": stream_checks},
                metrics=cfg.get("metrics") or {},
                versions=versions(),
                source_commit=source_commit(),
            )
            temps[-1].write_bytes(json_bytes(manifest))
        streamed = (f"; stream artifacts: {len(stream_checks) // len(streams)} ragged/chunked "
                    f"checks, max abs error {max(r['max_abs'] for r in stream_checks):.2g}"
                    if stream else "")
        log(f"{spec.name}: ONNX ops {', '.join(graph['ops'])}; self-check passed at "
            f"{len(rows) // len(ARTIFACTS)} shapes, max abs error "
            f"{max(r['max_abs'] for r in rows):.2g}{streamed}")
        return manifest
