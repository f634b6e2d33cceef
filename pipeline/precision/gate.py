"""The budget gate: every (runtime, precision) pair against eager fp32, figures and verdict.

    entries = check_pairs(model_dir, manifest, spec, reference, budget, inputs)

Called by verify (one entry per pair in verification.json's `precisions`). For each pair:
  data     the verification inputs (verify's default shapes at unit scale and at x10, plus
           a (256, 50) batch; drawn by pipeline/inputs.py, so a chain's token ids are inside
           its vocabulary and a packed model gets ragged `lengths`), or the user's sequences
           (verify reads them with score's reader; equal lengths run together), through
           the pair's stateless file; a per-step output is compared at each row's valid
           steps only (a packed model's steps past a row's length are padding);
  stream   where the model has a stream form: LONG_STEPS steps fed one at a time to the
           pair's stream file with every state carried (h, c, and a chain's several
           layers' states), at batch LONG_BATCH, the output at every step against eager's
           (the eager stream reference fed the same way); quantization error may grow
           through the recurrence, so it is measured there. A model without a stream form
           (a bidirectional layer, a pooled readout) records why (`stream_missing`).
  ragged   the stream file at several steps per call, the states carried: RAGGED_CALLS
           calls of RAGGED_SEQ steps of the same data, the first and last with rows of
           their own lengths (garbage past them), the middle one every row full. One-step
           calls never reach the part of a stream graph that gathers each row's state at
           its own last step, nor an LSTM's Scan form for ragged rows (export/onnx_graph.py).
           Judged by its max error alone: 3 x 8 answers of a last-step model are too few
           for a label rate (one flip would be 4%); a wrong gather shows in the max error.
Every set of figures (budget.py) must be within the budget. A pair that cannot run here
(no GPU for fp16, no bf16 units, a runtime not installed) is `unavailable` and, like a
failed one, never used. fp32 pairs are the runtimes verify judged by its tolerance rule;
their figures are recorded beside the variants' for the choice.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import first_line
from ..inputs import garbage_past, model_feeds, sample_input, sample_lengths
from ..runtimes import artifact
from . import variant
from .budget import Budget, figures, judge

LONG_STEPS, LONG_BATCH = 1200, 8
RAGGED_SEQ, RAGGED_CALLS = 40, 3
DATA_ROWS = 4096            # the user's rows read at most


def verification_inputs(spec, shapes, scales, seed: int = 0) -> list[dict]:
    """Feeds ({input[, lengths]}): verify's shapes at each of its scales, + 256x50. Token
    ids have no scale (one draw per shape); a packed model's lengths are ragged."""
    rng = np.random.default_rng(seed + 23)
    scales = scales[:1] if spec.input_kind == "tokens" else scales
    return [model_feeds(spec, rng, b, s, scale) for b, s in shapes for scale in scales] + \
        [model_feeds(spec, rng, 256, 50)]


def as_feeds(spec, x) -> dict:
    """A (batch, seq[, F]) array of equal-length rows (the user's data) as feeds."""
    if isinstance(x, dict):
        return x
    feeds = {spec.input_name: np.asarray(x, spec.input.dtype)}
    if spec.takes_lengths:
        feeds[spec.lengths_name] = np.full(len(x), np.shape(x)[1], np.int64)
    return feeds


def valid(spec, y: np.ndarray, feeds: dict) -> np.ndarray:
    """The output where it means something: a per-step output (batch, seq, O) of a model
    given lengths, at each row's first `lengths` steps only ((valid steps, O)); else y."""
    lengths = feeds.get(spec.lengths_name)
    if lengths is None or y.ndim != 3:
        return y
    return y[np.arange(y.shape[1])[None, :] < np.asarray(lengths)[:, None]]


def run_all(runner, spec, inputs: list[dict]) -> list[np.ndarray]:
    return [valid(spec, runner.run(f)[spec.output_name], f) for f in inputs]


def group_by_length(sequences, dtype=np.float32, rows: int = DATA_ROWS) -> list[np.ndarray]:
    """At most `rows` sequences, (seq, F) features or (seq,) token ids, as groups of equal
    length, (n, seq, F) or (n, seq), of the model's input `dtype`."""
    groups: dict[int, list] = {}
    for s in list(sequences)[:rows]:
        groups.setdefault(len(s), []).append(s)
    return [np.stack(g).astype(dtype) for _, g in sorted(groups.items())]


def joined_stream(sequences, batch: int = LONG_BATCH, steps: int = LONG_STEPS) -> np.ndarray:
    """The user's rows joined end to end in their order, cycled where they hold fewer than
    batch x steps steps, cut into `batch` streams: (batch, steps, F) features, or
    (batch, steps) token ids, in the rows' own dtype."""
    rows = np.concatenate([np.asarray(s) for s in sequences])   # (all steps[, F])
    if not len(rows):
        raise ValueError("no steps in the user's data")
    reps = -(-batch * steps // len(rows))
    rows = np.tile(rows, (reps,) + (1,) * (rows.ndim - 1))[:batch * steps]
    return rows.reshape(batch, steps, *rows.shape[1:])


def long_stream(runner, spec, x: np.ndarray) -> np.ndarray:
    """Feed x (batch, T, F) one step per call, states carried from zeros; (T, batch, O)."""
    batch = x.shape[0]
    states = {i: np.zeros((batch, *t.shape[1:]), np.float32)
              for (i, _), t in zip(spec.state_names, spec.stream_inputs[2:])}
    ones, outs = np.ones(batch, np.int64), []
    for t in range(x.shape[1]):            # x: (batch, T, F) features or (batch, T) ids
        y = runner.run({spec.input_name: np.ascontiguousarray(x[:, t:t + 1]),
                        spec.lengths_name: ones, **states})
        states = {i: y[o] for i, o in spec.state_names}
        outs.append(y[spec.output_name])
    return np.stack(outs)


def ragged_calls(spec, x: np.ndarray, seed: int = 0) -> list[dict]:
    """Stream feeds without states: x (batch, T, F) cut into RAGGED_CALLS calls of
    RAGGED_SEQ steps; the first and last with ragged lengths (row 0 full, row 1 one step)
    and garbage past them, the middle one full length."""
    rng, calls = np.random.default_rng(seed + 2000), []
    for k in range(RAGGED_CALLS):
        chunk = np.array(x[:, k * RAGGED_SEQ:(k + 1) * RAGGED_SEQ])   # (batch, seq[, F])
        batch, seq = chunk.shape[:2]
        lengths = np.full(batch, seq, np.int64) if k % 2 else sample_lengths(rng, batch, seq)
        calls.append({spec.input_name: garbage_past(spec, rng, chunk, lengths),
                      spec.lengths_name: lengths})
    return calls


def ragged_stream(runner, spec, calls: list[dict]) -> list[np.ndarray]:
    """Each call's output at its valid rows / steps, states carried from zeros."""
    batch = calls[0][spec.input_name].shape[0]
    states = {i: np.zeros((batch, *t.shape[1:]), np.float32)
              for (i, _), t in zip(spec.state_names, spec.stream_inputs[2:])}
    outs = []
    for feeds in calls:
        y = runner.run({**feeds, **states})
        states = {i: y[o] for i, o in spec.state_names}
        outs.append(valid(spec, y[spec.output_name], feeds))
    return outs


class Eager:
    """Eager fp32's outputs on the gate's data, computed once for every pair."""

    def __init__(self, spec, model_dir: Path, reference, inputs, seed: int = 0,
                 stream: bool = True, stream_x: np.ndarray | None = None):
        self.spec, self.inputs = spec, [as_feeds(spec, x) for x in inputs]
        self.outputs = run_all(reference, spec, self.inputs)
        self.stream_x = self.stream_y = self.ragged = self.ragged_y = None
        # the long stream's input (LONG_BATCH, LONG_STEPS, F): the user's rows joined, or drawn
        self.stream_data = "user's rows joined" if stream_x is not None else "unit-normal draw"
        if spec.has_stream and stream:
            from ..runtimes import load_stream_runner
            rng = np.random.default_rng(seed + 1000)
            self.stream_x = sample_input(spec, rng, LONG_BATCH, LONG_STEPS) \
                if stream_x is None else stream_x
            reference = load_stream_runner("torch", spec, model_dir, "cpu", 1)
            self.stream_y = long_stream(reference, spec, self.stream_x)
            self.ragged = ragged_calls(spec, self.stream_x, seed)
            self.ragged_y = ragged_stream(reference, spec, self.ragged)


def check_pair(runtime: str, precision: str, model_dir: Path, entry: dict, eager: Eager,
               budget: Budget) -> dict:
    """Run one variant pair on the gate's data; its verification.json entry."""
    spec, v = eager.spec, variant(precision)
    files = {"model": v.artifact(entry, False), "stream": v.artifact(entry, True)}
    row = {"runtime": runtime, "precision": precision, "artifact": files["model"],
           "stream_artifact": files["stream"], "budget": budget.as_dict()}
    if "f32_layers" in entry:       # bf16: the recurrent layers its files keep f32 (ov_f32.py)
        row["f32_layers"] = entry["f32_layers"]
    reason = v.unavailable(runtime)
    if reason:
        return {**row, "passed": False, "status": "unavailable", "reason": reason}
    classification = spec.task == "classification"
    try:
        runner = v.load(runtime, spec, model_dir / files["model"], threads=1)
        actual = run_all(runner, spec, eager.inputs)
        row["figures"] = figures(actual, eager.outputs, classification)
        row["provider"], row["arithmetic"] = runner.provider, runner.precision
        if eager.stream_x is not None and files["stream"]:
            stream = v.load(runtime, spec, model_dir / files["stream"], threads=1, stream=True)
            stream.inputs = tuple(t.name for t in spec.stream_inputs)
            stream.outputs = tuple(t.name for t in spec.stream_outputs)
            y = long_stream(stream, spec, eager.stream_x)
            row["stream"] = {"steps": eager.stream_x.shape[1], "batch": eager.stream_x.shape[0],
                             "data": eager.stream_data,
                             **figures([y], [eager.stream_y], classification)}
            row["stream_ragged"] = {
                "calls": RAGGED_CALLS, "seq": RAGGED_SEQ, "batch": eager.stream_x.shape[0],
                **figures(ragged_stream(stream, spec, eager.ragged), eager.ragged_y,
                          classification)}
        elif eager.stream_x is not None:
            row["stream"] = None
            row["stream_missing"] = entry.get("skipped", {}).get("stream", "no stream file")
        else:
            row["stream"] = None
            row["stream_missing"] = spec.stream_refusal if spec.layers else \
                "bidirectional: no stream form"
    except Exception as exc:       # a pair that cannot run fails, with the runtime's words
        return {**row, "passed": False, "status": "failed",
                "reason": f"runtime error: {first_line(exc)}"}
    reasons = outside(row, budget)
    return {**row, "passed": not reasons, "status": "passed" if not reasons else "failed",
            "reason": "; ".join(reasons)}


def outside(row: dict, budget: Budget) -> list[str]:
    """Why a pair's figures (data, long stream, ragged calls) are outside `budget`."""
    reasons = judge(row["figures"], budget)
    if row.get("stream"):
        reasons += judge(row["stream"], budget, f"after {LONG_STEPS} stream steps")
    if row.get("stream_ragged"):         # max error alone (too few answers for a label rate)
        reasons += judge(row["stream_ragged"], replace(budget, label_agree=0.0),
                         f"on {RAGGED_SEQ}-step stream calls of ragged rows")
    return reasons


def check_pairs(model_dir: Path, manifest: dict, spec, reference, budget: Budget,
                inputs: list[np.ndarray], fp32_runners=(), seed: int = 0,
                log=lambda s: None, stream_x: np.ndarray | None = None) -> list[dict]:
    """Every variant pair the manifest lists, plus the fp32 runners' figures, on `inputs`
    (feeds: `verification_inputs`; or arrays of equal-length rows: the user's sequences
    grouped); the long stream on `stream_x` (the user's rows: `joined_stream`) or drawn."""
    listed = manifest.get("precisions") or {}
    eager = Eager(spec, Path(model_dir), reference, inputs, seed, stream=bool(listed),
                  stream_x=stream_x)
    entries = []
    for runner in fp32_runners:     # judged by verify's tolerance rule; figures for the choice
        row = {"runtime": runner.name, "precision": "fp32", "artifact": artifact(runner.name),
               "status": "fp32", "passed": None,
               "reason": "judged by verify's fp32 tolerance rule (rows)"}
        try:
            actual = run_all(runner, spec, eager.inputs)
            row["figures"] = figures(actual, eager.outputs, spec.task == "classification")
        except Exception as exc:
            row["reason"] = f"runtime error: {first_line(exc)}"
        entries.append(row)
    for precision, entry in listed.items():
        for runtime in variant(precision).runtimes:
            e = check_pair(runtime, precision, Path(model_dir), entry, eager, budget)
            log(e)
            entries.append(e)
    return entries
