"""publish --deploy: which verified (runtime, precision) pairs become Triton models.

    python -m pipeline publish --model churn --deploy best --signing-key .keys/signing.key
    python -m pipeline publish --model churn --deploy openvino:bf16 --signing-key ...

`best` reads `deployment.json` (bench's choice per shape, made on the build now on disk)
and deploys every pair chosen at some shape, the stream-step choice included: each as a
stateless Triton model and its stream twin where the variant has a stream file.
`RUNTIME:PRECISION` deploys that pair. fp32 on onnx or torchscript is what publish always writes; anything else becomes
extra Triton models (publishing/triton.py DEPLOYED): `<model>_onnx_int8` (onnxruntime
backend, model_int8.onnx served as model.onnx), `<model>_openvino_bf16` (openvino backend,
model_bf16.xml/.bin, OpenVINO IR, served as model.xml/model.bin, with HINT_BF16: YES),
`<model>_openvino`, `<model>_onnx_fp16`,
each with a `stream_` twin. A pair verify did not let through is refused in one line with
its figures (precision/choice.py `require_pair`); nothing is published then.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import PublishError
from .triton import DEPLOYED

# Triton model (BACKENDS key) of a deployed variant -> the build's file it serves
VARIANT_SOURCES = {"onnx_int8": "model_int8.onnx", "stream_onnx_int8": "model_stream_int8.onnx",
                   "openvino": "model.onnx", "stream_openvino": "model_stream.onnx",
                   "openvino_bf16": "model_bf16.xml", "stream_openvino_bf16": "model_stream_bf16.xml",
                   "onnx_fp16": "model_fp16.onnx", "stream_onnx_fp16": "model_stream_fp16.onnx"}
# ... and the weights an OpenVINO IR needs beside it (served as model.bin, next to model.xml)
VARIANT_WEIGHTS = {"openvino_bf16": "model_bf16.bin", "stream_openvino_bf16": "model_stream_bf16.bin"}


def pair_of(key: str) -> tuple[str, str]:
    """BACKENDS key -> (runtime, precision): onnx_int8 -> (onnx, int8), torchscript -> fp32."""
    base = key.removeprefix("stream_")
    for pair, name in DEPLOYED.items():
        if name == base:
            return pair
    return base, "fp32"


def requested_pairs(model_dir: Path, deploy: str, files: dict) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs --deploy asks for; `best`: every pair deployment.json
    chose at some shape, the choice made on the build whose manifest `files` are given."""
    from ..precision import parse_pair
    if deploy != "best":
        return [parse_pair(deploy)]
    path = Path(model_dir) / "deployment.json"
    try:
        choice = json.loads(path.read_text())
    except (OSError, ValueError):
        raise PublishError(f"{path}: missing or unreadable; run `python -m pipeline bench "
                           f"--model {Path(model_dir).name}` first (--deploy best reads it)") \
            from None
    if choice.get("artifacts") != files:
        raise PublishError(f"{path}: chosen for other files than those on disk (export ran "
                           f"since bench); run `python -m pipeline bench --model "
                           f"{Path(model_dir).name}` again")
    return list(dict.fromkeys((c["runtime"], c["precision"])
                              for c in choice.get("shapes", {}).values() if c.get("runtime")))


# the pairs every publish writes (<model>_onnx, <model>_torchscript), --deploy or not
ALWAYS = (("onnx", "fp32"), ("torchscript", "fp32"))


def check_deployable(runtime: str, precision: str) -> None:
    """PublishError unless a Triton backend serves (runtime, precision): one of ALWAYS or a
    DEPLOYED pair; asked before anything is verified."""
    if (runtime, precision) in ALWAYS or (runtime, precision) in DEPLOYED:
        return
    served = [f"{r}:{p}" for r, p in (*ALWAYS, *DEPLOYED)]
    raise PublishError(f"{runtime}:{precision} has no Triton backend to deploy it on "
                       f"(deployable: {', '.join(served)})")


def deploy_keys(model_dir: Path, spec, manifest: dict, report: dict, deploy: str | None):
    """The extra Triton models (BACKENDS keys) --deploy adds; PublishError for a pair that
    was not verified or failed its budget, or one with no Triton backend."""
    if not deploy:
        return []
    from ..errors import PipelineError
    from ..precision.choice import require_pair
    keys = []
    for runtime, precision in requested_pairs(model_dir, deploy, manifest["files"]):
        check_deployable(runtime, precision)
        try:
            require_pair(report, runtime, precision)
        except PipelineError as exc:
            raise PublishError(str(exc)) from None
        if (runtime, precision) in ALWAYS:
            continue                                  # published anyway
        name = DEPLOYED[(runtime, precision)]
        for kind in ("model", "stream"):
            key = name if kind == "model" else f"stream_{name}"
            if kind == "stream" and not spec.has_stream:
                continue
            if VARIANT_SOURCES[key] in manifest["files"]:
                keys.append(key)
    return list(dict.fromkeys(keys))


def precision_lines(report: dict, key: str) -> list[str]:
    """The model card's precision section for the Triton model `key`."""
    from ..precision.budget import describe
    runtime, precision = pair_of(key)
    entry = next((e for e in report.get("precisions", []) if e["runtime"] == runtime
                  and e["precision"] == precision), None)
    lines = ["## Precision", "", f"`{precision}` on `{runtime}`."]
    if entry:
        lines.append(f"Measured against eager fp32 by verify: {describe(entry)}.")
        if precision != "fp32":
            lines.append(f"Budget: {entry.get('budget')}.")
    return lines + [""]


def precision_annotations(registry: Path) -> dict[str, str]:
    """{annotation: "precision on runtime, measured error"} for the newest version of every
    Triton model in the repository (the KServe manifest carries them)."""
    from ..precision.budget import describe
    notes = {}
    for folder in sorted(p for p in Path(registry).iterdir() if p.is_dir()):
        versions = sorted(int(v.name) for v in folder.iterdir() if v.name.isdigit())
        if not versions:
            continue
        newest = folder / str(versions[-1])
        try:
            runtime = json.loads((newest / "manifest.json").read_text())["runtime"]
            report = json.loads((newest / "verification.json").read_text())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        pair = pair_of(runtime)
        entry = next((e for e in report.get("precisions", []) if (e["runtime"], e["precision"])
                      == pair), {"runtime": pair[0], "precision": pair[1], "status": "fp32"})
        notes[f"rnn-pipeline.io/precision.{folder.name}"[:253]] = describe(entry)
    return notes
