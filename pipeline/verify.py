"""Stage 3: verify that every exported runtime computes what the trained model computes.

    python -m pipeline verify --model classifier --device auto --shapes 1x1,64x500
    python -m pipeline verify --runtime all        # + OpenVINO, tract, ONNX reference evaluator
    python scripts/verify.py

Integrity first: every file in `manifest.json` must match its sha256 and size (nothing is
loaded before). Then the eager model rebuilt from weights.safetensors (CPU, the reference)
is compared with the TorchScript artifact and with the ONNX artifact in ONNX Runtime (the
default `runtimes`; any of pipeline.runtimes.RUNTIMES can be chosen, "all" for every one) on a
seeded matrix of inputs: batch 1, 2, 64 x seq 1, the export example's, 10x it, each at
unit scale and at scale 10, where tanh saturates. Rule per output: no NaN/Inf, every
element |a - b| <= atol + rtol*|b| (spec tolerances for the device really used), and for
a classifier the same argmax on every row. The bound also allows drift_factor x the float32
drift D measured on that very input (eager float32 vs the same model in float64 and two
float64 copies with weights rounded by +-1 float32 ulp; see compare.py): an expansive
recurrence makes honest float32 runtimes stray past the tolerance at long sequences. A
runtime that does not compute in float32 (OpenVINO left at bf16) fails every row. The
stream artifacts (model_stream.*) are checked in every chosen runtime on ragged batches
and chunked sequences with carried state (see verify_stream); their rows are the
`stream_*` runtimes. The report goes to the terminal and to
`<out>/<model>/verification.json` (rows, and one `runtimes` entry per runtime: version,
provider, precision, worst error per shape, the shapes it ran); any failing row makes
the stage fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import WEIGHTS, read_config
from .compare import compare
from .errors import VerificationError, first_line
from .fsio import atomic_write_json, model_lock
from .inputs import model_feeds
from .manifest import check_manifest, read_manifest, require_listed
from .provenance import versions
from .runtimes import (DEFAULT_VERIFY, artifact, load_runner, load_stream_runner, on_cuda,
                       resolve_device, runtime_version, select_runtimes)
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
    runtimes: tuple[str, ...] = DEFAULT_VERIFY        # names from RUNTIMES, or "all"
    # the precision variants' accuracy budget (pipeline/precision/budget.py; None: default)
    # and the data it is measured on (None: the verification inputs; else score's reader)
    budget: object = None
    data: Path | None = None


def default_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    return [(b, s) for b in (1, 2, 64) for s in (1, spec.example_seq, 10 * spec.example_seq)]


def main(config: VerifyConfig, log: Callable[[str], None] = print) -> dict:
    """Verify one model; write and return the report. VerificationError if any row fails."""
    device = resolve_device(config.device)
    runtimes = select_runtimes(config.runtimes, DEFAULT_VERIFY)   # missing: an error first
    model_dir = Path(config.out) / config.model
    read_manifest(model_dir)    # a clear error (run export first) before the lock's mkdir
    with model_lock(model_dir):   # export can't swap files between the hash check and loading
        manifest = check_manifest(model_dir, require=tuple(dict.fromkeys(
            artifact(r) or WEIGHTS for r in runtimes)))
        spec = read_config(model_dir)["recipe"].model
        streams = [r for r in runtimes if artifact(r, stream=True)] if spec.has_stream else []
        require_listed(model_dir, manifest, [artifact(r, stream=True) for r in streams])
        # One thread for the eager reference (and so for torch here): these networks are a
        # few KFLOP a step, and a second OpenMP thread spinning on a busy 2-core machine
        # made a row-by-row LSTM reference 13x slower (measured, issue 17).
        reference = load_runner("torch", spec, model_dir, "cpu", threads=1)
        runners = [load_runner(r, spec, model_dir / artifact(r) if artifact(r) else model_dir,
                               _device_for(r, device)) for r in runtimes]
        shapes = list(config.shapes or default_shapes(spec))
        rows = run_matrix(spec, reference, runners, shapes, config.seed)
        # The stream artifacts (issue 13): ragged and chunked checks, see verify_stream; a
        # bidirectional model has none.
        if streams:
            rows += stream_rows(spec, load_stream_runner("torch", spec, model_dir),
                                [load_stream_runner(r, spec, model_dir / artifact(r, stream=True),
                                                    _device_for(r, device)) for r in streams],
                                shapes, config.seed)
        # Precision variants (issue 23): every (runtime, precision) pair the manifest lists,
        # against eager fp32 on the budget's data; the fp32 runtimes' figures beside them.
        # A pair outside the budget is recorded as failed (never used); the fp32 verdict
        # above does not depend on it.
        # A chain of layers (issue 22) too, where it was exported with variants: its feeds
        # are drawn by pipeline/inputs.py (token ids, ragged lengths) or read with --data
        # (token ids or features), per-step outputs compared at valid steps
        # (precision/gate.py); fp32 alone, no figures (as before).
        from .precision.budget import DEFAULT_BUDGET
        from .precision.gate import (check_pairs, group_by_length, joined_stream,
                                     verification_inputs)
        budget = config.budget or DEFAULT_BUDGET
        precisions, data_note = [], "verification inputs"
        if not spec.layers or manifest.get("precisions"):
            cpu_runners = [r for r in runners if not on_cuda(r.provider)
                           and r.precision == spec.dtype]
            # with the user's data, its rows joined end to end make the long stream too
            sequences = None
            if config.data:
                sequences, data_note = user_sequences(config.data, spec)
            inputs = group_by_length(sequences, spec.input.dtype) if sequences else \
                verification_inputs(spec, default_shapes(spec), SCALES, config.seed)
            precisions = check_pairs(model_dir, manifest, spec, reference, budget, inputs,
                                     cpu_runners, config.seed, stream_x=joined_stream(
                                         sequences) if sequences else None)
        for entry in precisions:
            if entry["precision"] == "fp32":
                entry["passed"] = all(r["passed"] for r in rows if r["runtime"] in
                                      (entry["runtime"], f"stream_{entry['runtime']}"))
        report = {
            "model": spec.name,
            "passed": all(r["passed"] for r in rows),
            "device": device,
            "providers": sorted({f"{r['runtime']}:{r['provider']}" for r in rows}),
            "tolerance": to_dict(spec.tolerance(device)),
            "artifacts": manifest["files"],   # hashes just checked: the files judged
            "drift_factor": spec.drift_factor,
            "runtimes": [runtime_entry(r, rows) for r in runners],
            "rows": rows,
            "budget": budget.as_dict(),
            "budget_data": data_note,
            "precisions": precisions,
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


def user_sequences(path: Path, spec: ModelSpec, rows: int = 4096
                   ) -> tuple[list[np.ndarray], str]:
    """The first `rows` good sequences of a .parquet / folder / .npz (score's reader and row
    checks), each (seq, F) features or (seq,) token ids: the data `--data` measures the
    precision budget on; and what the report says of it (the rows refused, the first's
    reason). VerificationError where no row is good."""
    from .scoring.dataset import open_dataset
    from .scoring.grouping import step_width
    from .scoring.rows import check_batch

    data, seqs, F = open_dataset(Path(path), spec), [], step_width(spec)
    shape = (lambda n: (n,)) if spec.input_kind == "tokens" else (lambda n: (n, F))
    refused, first = 0, None
    for batch in data.batches(4096, spec):
        c = check_batch(batch, spec, data.id_column, data.sequence_column)
        seqs += [c.values[s:s + n * F].reshape(shape(n)) for s, n in zip(c.starts, c.lengths)]
        refused += len(c.bad_reasons)
        first = first or (c.bad_reasons[0] if c.bad_reasons else None)
        if len(seqs) >= rows:
            break
    if not seqs:
        raise VerificationError(f"--data {path}: no row is an input {spec.name} takes "
                                f"(first refused: {first or 'the file has no rows'})")
    kept = len(seqs[:rows])
    note = str(path) if not refused else (f"{path} ({kept} row{'s' * (kept != 1)}; {refused} "
                                          f"refused by score's row checks, first: {first})")
    return seqs[:rows], note


def _device_for(runtime: str, device: str) -> str:
    """ONNX Runtime follows --device; TorchScript runs on CUDA only where torch has it."""
    if runtime == "onnx" or device == "cpu":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def runtime_entry(runner, rows: list[dict]) -> dict:
    """verification.json's summary of one runtime: what ran, where, and its worst errors."""
    mine = [r for r in rows if r["runtime"] == runner.name]
    stream = [r for r in rows if r["runtime"] == f"stream_{runner.name}"]
    by_shape: dict[str, float] = {}
    for r in mine:
        key = f"{r['batch']}x{r['seq']}"
        by_shape[key] = max(by_shape.get(key, 0.0), r["max_abs"])
    return {"name": runner.name, "version": runtime_version(runner.name),
            "provider": runner.provider, "precision": runner.precision,
            "passed": all(r["passed"] for r in mine + stream),
            "stream_passed": all(r["passed"] for r in stream) if stream else None,
            "stream_worst_max_abs": max((r["max_abs"] for r in stream), default=None),
            "worst_max_abs": max((r["max_abs"] for r in mine), default=None),
            "worst_ratio": max((r["worst_ratio"] for r in mine), default=None),
            "max_abs_by_shape": by_shape,
            "shapes": [list(s) for s in dict.fromkeys((r["batch"], r["seq"]) for r in mine)]}


def run_matrix(spec: ModelSpec, reference, runners, shapes, seed: int) -> list[dict]:
    """Compare each runner with the reference on seeded inputs at every (shape, scale)."""
    from .runtimes.pytorch import float64_twin

    exact_model = float64_twin(reference)
    rng = np.random.default_rng(seed)
    rows = []
    for batch, seq in shapes:
        for scale in SCALES:
            feeds = model_feeds(spec, rng, batch, seq, scale)   # ids in the vocabulary
            expected = reference.run(feeds)[spec.output_name]
            exact = [y[spec.output_name] for y in exact_model.spread(feeds)]
            for runner in runners:
                tol = spec.tolerance("cuda" if on_cuda(runner.provider) else "cpu")
                try:
                    if runner.precision != spec.dtype:
                        raise RuntimeError(f"computes in {runner.precision}, not {spec.dtype}")
                    actual = runner.run(feeds)[spec.output_name]
                    c = compare(actual, expected, tol, spec.task == "classification",
                                exact, spec.drift_factor).as_dict()
                except Exception as exc:  # a runtime that cannot run a shape fails that row
                    c = {"passed": False, "max_abs": float("inf"), "max_rel": float("inf"),
                         "worst_ratio": float("inf"), "argmax_agree": None, "f32_drift": None,
                         "reason": f"runtime error: {first_line(exc)}"}
                rows.append({"runtime": runner.name, "provider": runner.provider,
                             "batch": batch, "seq": seq, "scale": scale,
                             "atol": tol.atol, "rtol": tol.rtol, **c})
    return rows


def format_table(report: dict) -> str:
    """The report as a fixed-width terminal table."""
    head = f"{'model':<11} {'runtime':<21} {'provider':<21} {'shape':>9} {'scale':>5} " \
           f"{'max abs err':>11} {'max rel err':>11} verdict"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        verdict = "pass" if r["passed"] else f"FAIL ({r['reason']})"
        lines.append(f"{report['model']:<11} {r['runtime']:<21} {r['provider']:<21} "
                     f"{r['batch']:>4}x{r['seq']:<4} {r['scale']:>5g} {r['max_abs']:>11.2e} "
                     f"{r['max_rel']:>11.2e} {verdict}")
    return "\n".join(lines)
