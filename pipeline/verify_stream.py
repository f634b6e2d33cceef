"""Verify the stream artifacts (model_stream.*): ragged batches and carried state.

    rows = stream_rows(spec, reference, runners, shapes, seed)   # verify and export call it

Runtime-agnostic: it only calls `runner.run(feeds)` with the spec's stream tensors
(`input`, `lengths`, states -> `output`, states; states are h, and c for an LSTM), so any
runner that loads a stream artifact can be checked. The reference is the eager row-by-row
form (`pipeline.families.StreamReference`). Every feed passes the stream input policy
(`contract.check_stream_feeds`) first. Checks, each a report row with measured errors:

  ragged   at each (batch, seq) and scale: lengths drawn in 1..seq (row 0 full, row 1 of
           length 1), random states, and garbage (not zeros) past each row's length;
           output and states against the reference run on each unpadded row.
  chunked  one sequence of CHUNK_LENGTH steps fed in pieces (e.g. 1+7+50+242, 299+1, 300
           single steps), the states carried, at batch 1 and 4; the final output and
           states against the reference on the whole sequence from zeros.

A row's max_abs / max_rel / worst_ratio are the worst over output and states; all must
pass the spec's tolerance (pipeline.compare's rule; argmax too for a classifier).
"""
from __future__ import annotations

import numpy as np

from .compare import compare
from .errors import first_line
from .inputs import garbage_past, sample_input, sample_lengths
from .contract import check_stream_feeds
from .runtimes import artifact, on_cuda
from .specs import ModelSpec

CHUNK_LENGTH = 300
CHUNKINGS = ((1, 7, 50, 242), (299, 1), (1,) * CHUNK_LENGTH)
# Batch 1 (a streaming client) and a few rows. The stream graphs have no If on the batch
# (see export/onnx_graph.py), so larger batches exercise nothing more in chunks; they run
# in the ragged checks, at verify's shapes.
CHUNK_BATCHES = (1, 4)
SCALES = (1.0, 10.0)      # x10 saturates tanh, as in verify


def ragged_feeds(spec: ModelSpec, rng, batch: int, seq: int, scale: float = 1.0,
                 lengths=None) -> dict[str, np.ndarray]:
    """Seeded stream feeds: rows of their own lengths, garbage padding (other ids inside the
    vocabulary for a token model), a random h_in."""
    lengths = sample_lengths(rng, batch, seq) if lengths is None else \
        np.asarray(lengths, dtype=np.int64)
    x = garbage_past(spec, rng, sample_input(spec, rng, batch, seq, scale), lengths)
    x_spec, len_spec, *states = spec.stream_inputs
    feeds = {x_spec.name: x, len_spec.name: lengths}
    for t in states:    # h in tanh's range; an LSTM's c is unbounded, but this is typical
        feeds[t.name] = np.tanh(rng.standard_normal((batch, *t.shape[1:]))).astype(np.float32)
    return feeds


def compare_stream(spec: ModelSpec, actual: dict, expected: dict, tol, lengths=None) -> dict:
    """Compare output and every state; the worst of them, reasons named by tensor. A
    per-step output is compared at each row's valid steps only (`lengths`): past them the
    contract lets it hold anything."""
    if lengths is not None and len(spec.output.shape) == 3:
        pad = np.arange(actual[spec.output_name].shape[1])[None, :] >= lengths[:, None]
        actual = {**actual, spec.output_name: np.where(pad[..., None], expected[spec.output_name],
                                                       actual[spec.output_name])}
    rows = {t.name: compare(actual[t.name], expected[t.name], tol,
                            spec.task == "classification" and t.name == spec.output_name)
            for t in spec.stream_outputs}
    worst = max(rows.values(), key=lambda c: c.worst_ratio)
    return {"passed": all(c.passed for c in rows.values()), "max_abs": worst.max_abs,
            "max_rel": max(c.max_rel for c in rows.values()), "worst_ratio": worst.worst_ratio,
            "argmax_agree": rows[spec.output_name].argmax_agree,
            "reason": "; ".join(f"{n}: {c.reason}" for n, c in rows.items() if c.reason),
            **{f"max_abs_{n}": c.max_abs for n, c in rows.items()}}


def _failed(exc: Exception) -> dict:
    return {"passed": False, "max_abs": float("inf"), "max_rel": float("inf"),
            "worst_ratio": float("inf"), "argmax_agree": None,
            "reason": f"runtime error: {first_line(exc)}"}


def run_chunked(runner, spec: ModelSpec, x: np.ndarray, chunks) -> dict[str, np.ndarray]:
    """Feed x (batch, sum(chunks), F) piece by piece, each state output fed back as the
    next call's state input (zeros first); the last outputs (a per-step output: every
    chunk's, joined along the sequence)."""
    start, result, states, steps = 0, None, {}, []
    for n in chunks:
        feeds = {spec.input_name: x[:, start:start + n], **states,
                 spec.lengths_name: np.full(x.shape[0], n, np.int64)}
        result = runner.run(check_stream_feeds(feeds, spec, "chunked stream"))
        states = {i: result[o] for i, o in spec.state_names}
        steps.append(result[spec.output_name])
        start += n
    if len(spec.output.shape) == 3:
        result = {**result, spec.output_name: np.concatenate(steps, axis=1)}
    return result


def _row(runner, tol, check: str, batch: int, seq: int, scale: float, c: dict) -> dict:
    return {"runtime": f"stream_{runner.name}", "provider": runner.provider,
            "artifact": artifact(runner.name, stream=True), "check": check, "batch": batch,
            "seq": seq, "scale": scale, "atol": tol.atol, "rtol": tol.rtol, **c}


def stream_rows(spec: ModelSpec, reference, runners, shapes, seed: int = 0,
                chunkings=CHUNKINGS, batches=None) -> list[dict]:
    """Every check above for every runner; rows shaped like verify's (plus check, artifact)."""
    rng = np.random.default_rng(seed)
    rows = []

    def judge(check, feeds, expected, run, scale):
        batch, seq = feeds[spec.input_name].shape[:2]
        for runner in runners:
            tol = spec.tolerance("cuda" if on_cuda(runner.provider) else "cpu")
            try:
                c = compare_stream(spec, run(runner), expected, tol,
                                   feeds[spec.lengths_name])
            except Exception as exc:  # a runtime that cannot run a case fails that row
                c = _failed(exc)
            rows.append(_row(runner, tol, check, batch, seq, scale, c))

    for batch, seq in shapes:
        for scale in SCALES:
            feeds = check_stream_feeds(ragged_feeds(spec, rng, batch, seq, scale), spec,
                                       f"ragged {batch}x{seq}")
            judge("ragged", feeds, reference.run(feeds), lambda r: r.run(feeds), scale)
    for batch in batches or CHUNK_BATCHES:
        x = sample_input(spec, rng, batch, sum(chunkings[0]))
        whole = check_stream_feeds({spec.input_name: x, spec.lengths_name:
                                    np.full(batch, x.shape[1], np.int64)}, spec, "whole")
        expected = reference.run(whole)
        for chunks in chunkings:
            label = f"chunked {'+'.join(map(str, chunks))}" if len(chunks) < 10 else \
                f"chunked {len(chunks)}x{chunks[0]}"
            judge(label, whole, expected, lambda r: run_chunked(r, spec, x, chunks), 1.0)
    return rows
