"""Stage 3: verify that every exported runtime computes what the trained model computes.

    python -m pipeline verify --model classifier --device auto --shapes 1x1,64x500
    python scripts/verify.py

Integrity first: every file in `manifest.json` must match its sha256 and size (nothing is
loaded before). Then the eager model rebuilt from weights.safetensors (CPU, the reference)
is compared with the TorchScript artifact and with the ONNX artifact in ONNX Runtime on a
seeded matrix of inputs: batch 1, 2, 64 x seq 1, the export example's, 10x it, each at
unit scale and at scale 10, where tanh saturates. Rule per output: no NaN/Inf, every
element |a - b| <= atol + rtol*|b| (spec tolerances for the device really used), and for
a classifier the same argmax on every row. The stream artifacts (model_stream.*) are
checked on ragged batches and chunked sequences with carried state (see verify_stream);
their rows are the `stream_*` runtimes. The report goes to the terminal and to
`<out>/<model>/verification.json`; any failing row makes the stage fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import read_config
from .compare import compare
from .errors import VerificationError, first_line
from .fsio import atomic_write_json, model_lock
from .manifest import check_manifest, read_manifest
from .provenance import versions
from .runtimes import (ARTIFACTS, STREAM_ARTIFACTS, load_runner, load_stream_runner, on_cuda,
                       resolve_device)
from .specs import ModelSpec, to_dict
from .verify_stream import stream_rows

REPORT = "verification.json"
SCALES = (1.0, 10.0)   # x10: pre-activations far beyond tanh's linear range


@dataclass(frozen=True)
class VerifyConfig:
    model: str
    out: Path = Path("exported")
    device: str = "auto"                              # auto | cpu | cuda
    shapes: tuple[tuple[int, int], ...] | None = None  # None: default_shapes(spec)
    seed: int = 0


def default_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    return [(b, s) for b in (1, 2, 64) for s in (1, spec.example_seq, 10 * spec.example_seq)]


def main(config: VerifyConfig, log: Callable[[str], None] = print) -> dict:
    """Verify one model; write and return the report. VerificationError if any row fails."""
    device = resolve_device(config.device)
    model_dir = Path(config.out) / config.model
    read_manifest(model_dir)    # a clear error (run export first) before the lock's mkdir
    with model_lock(model_dir):   # export can't swap files between the hash check and loading
        manifest = check_manifest(model_dir, require=(*ARTIFACTS.values(),
                                                      *STREAM_ARTIFACTS.values()))
        spec = read_config(model_dir)["recipe"].model
        reference = load_runner("torch", spec, model_dir, "cpu")
        runners = [load_runner(r, spec, model_dir / name, _device_for(r, device))
                   for r, name in ARTIFACTS.items()]
        shapes = list(config.shapes or default_shapes(spec))
        rows = run_matrix(spec, reference, runners, shapes, config.seed)
        # The stream artifacts (issue 13): ragged and chunked checks, see verify_stream.
        rows += stream_rows(spec, load_stream_runner("torch", spec, model_dir),
                            [load_stream_runner(r, spec, model_dir / name, _device_for(r, device))
                             for r, name in STREAM_ARTIFACTS.items()], shapes, config.seed)
        report = {
            "model": spec.name,
            "passed": all(r["passed"] for r in rows),
            "device": device,
            "providers": sorted({f"{r['runtime']}:{r['provider']}" for r in rows}),
            "tolerance": to_dict(spec.tolerance(device)),
            "artifacts": manifest["files"],   # hashes just checked: the files judged
            "rows": rows,
            "seed": config.seed,
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(model_dir / REPORT, report)
    failed = [r for r in rows if not r["passed"]]
    if failed:
        r = failed[0]
        raise VerificationError(
            f"{spec.name}: {len(failed)} of {len(rows)} checks failed; first: {r['runtime']} "
            f"({r['provider']}) batch {r['batch']} seq {r['seq']} scale {r['scale']:g}: "
            f"{r['reason']} (report: {model_dir / REPORT})", report)
    return report


def _device_for(runtime: str, device: str) -> str:
    """ONNX Runtime follows --device; TorchScript runs on CUDA only where torch has it."""
    if runtime == "onnx" or device == "cpu":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_matrix(spec: ModelSpec, reference, runners, shapes, seed: int) -> list[dict]:
    """Compare each runner with the reference on seeded inputs at every (shape, scale)."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch, seq in shapes:
        for scale in SCALES:
            x = (scale * rng.standard_normal((batch, seq, spec.input_size))).astype(np.float32)
            expected = reference.run({spec.input_name: x})[spec.output_name]
            for runner in runners:
                tol = spec.tolerance("cuda" if on_cuda(runner.provider) else "cpu")
                try:
                    actual = runner.run({spec.input_name: x})[spec.output_name]
                    c = compare(actual, expected, tol, spec.task == "classification").as_dict()
                except Exception as exc:  # a runtime that cannot run a shape fails that row
                    c = {"passed": False, "max_abs": float("inf"), "max_rel": float("inf"),
                         "worst_ratio": float("inf"), "argmax_agree": None,
                         "reason": f"runtime error: {first_line(exc)}"}
                rows.append({"runtime": runner.name, "provider": runner.provider,
                             "batch": batch, "seq": seq, "scale": scale,
                             "atol": tol.atol, "rtol": tol.rtol, **c})
    return rows


def format_table(report: dict) -> str:
    """The report as a fixed-width terminal table."""
    head = f"{'model':<11} {'runtime':<18} {'provider':<21} {'shape':>9} {'scale':>5} " \
           f"{'max abs err':>11} {'max rel err':>11} verdict"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        verdict = "pass" if r["passed"] else f"FAIL ({r['reason']})"
        lines.append(f"{report['model']:<11} {r['runtime']:<18} {r['provider']:<21} "
                     f"{r['batch']:>4}x{r['seq']:<4} {r['scale']:>5g} {r['max_abs']:>11.2e} "
                     f"{r['max_rel']:>11.2e} {verdict}")
    return "\n".join(lines)
