"""Compare a runtime's outputs with the reference: a function returning a report row.

An output passes when it has the reference's shape, holds no NaN or Inf, every element
satisfies |actual - expected| <= atol + rtol * |expected| (numpy.isclose's rule), and, for
a classifier, the argmax agrees on every row. Callers decide what a failure means.

Measured float32 drift (optional `exact`). A recurrence that expands (the classifier's
W_hh has spectral radius ~1.85) amplifies rounding along the sequence, so at long
sequences two honest float32 implementations (other GEMM kernels, another summation
order, a bias summed once instead of per step) can differ by more than the spec's
tolerance, by an amount that depends on the very input. So the caller passes `exact`: the
same model evaluated in float64 on the same input, plus float64 "siblings" whose weights
were each rounded once more by +-1 float32 unit roundoff (runtimes.pytorch.float64_models).
D = max_i max |expected - exact_i| is how far a float32-sized rounding moves this output
on this input, and each element may also be off by `drift_factor` x D:

    |actual - expected| <= max(atol + rtol * |expected|, drift_factor * D)

Measured (`make all` weights, one thread; issue 11). Why the siblings: eager float32's own
distance from float64 is a single sample and can be small by luck. At classifier
(52, 974) it was 4.0e-6 while ONNX Runtime, OpenVINO, tract and the reference evaluator
were all 3.5e-4..8.1e-4 from eager (202x it); with the 2 siblings D was 9.0e-4. With
this D, over random calls (batch 1-64, scales 1e-3/1/10), max|actual - expected| / D of
the four runtimes was at most: classifier, 240 calls at seq 256-2048: 2.9 / 2.8 / 4.8 /
1.8 (p99 <= 2.8); classifier, 240 calls at seq 1-512: 3.5 / 2.0 / 4.1 / 1.6; forecaster
(150 calls, seq 1-2048) up to 45, but there D ~1e-7 and every error was inside the plain
tolerance. drift_factor (the spec's, 8) is 1.7x the worst ratio seen. A real change
stays caught: 1e-3 noise on the weights moved the outputs by >= 434 D (median ~25000 D)
and failed the rule in 630 of 630 of those calls (tests/runtimes/test_drift.py checks it).

    >>> c = compare(actual, expected, Tolerance(1e-5, 1e-5), classification=True)
    >>> c.passed, c.max_abs, c.reason
    >>> compare(actual, expected, tol, exact=[float64, sibling1, sibling2], drift_factor=8.0)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .specs import Tolerance


@dataclass(frozen=True)
class Comparison:
    passed: bool
    max_abs: float           # max |actual - expected|
    max_rel: float           # max |actual - expected| / |expected| (expected == 0 skipped)
    worst_ratio: float       # max |actual - expected| / (atol + rtol * |expected|); <= 1 passes
    argmax_agree: bool | None
    reason: str              # "" when passed
    f32_drift: float | None = None   # D = max_i max |expected - exact_i|, when given

    def as_dict(self) -> dict:
        return asdict(self)


def compare(actual: np.ndarray, expected: np.ndarray, tol: Tolerance,
            classification: bool = False, exact=None, drift_factor: float = 0.0) -> Comparison:
    """`exact`: None, or one float64 evaluation, or a list of them (see the module doc)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return Comparison(False, float("inf"), float("inf"), float("inf"), None,
                          f"shape {actual.shape} != reference {expected.shape}")
    if not np.isfinite(actual).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(actual))[0])
        return Comparison(False, float("inf"), float("inf"), float("inf"), None,
                          f"non-finite value {actual[bad]} at index {bad}")
    diff = np.abs(actual - expected)
    scale = np.abs(expected)
    bound = tol.atol + tol.rtol * scale
    drift = None
    if exact is not None and expected.size:
        exacts = exact if isinstance(exact, (list, tuple)) else [exact]
        drift = max(float(np.abs(expected - np.asarray(e, dtype=np.float64)).max())
                    for e in exacts)
        bound = np.maximum(bound, drift_factor * drift)
    max_abs = float(diff.max(initial=0.0))
    nonzero = scale > 0
    max_rel = float((diff[nonzero] / scale[nonzero]).max(initial=0.0))
    worst = float((diff / bound).max(initial=0.0))
    agree = None
    if classification and actual.ndim == 2 and actual.size:
        agree = bool((actual.argmax(axis=-1) == expected.argmax(axis=-1)).all())
    reasons = []
    if worst > 1.0:
        at = tuple(int(i) for i in np.unravel_index(np.argmax(diff / bound), diff.shape))
        reasons.append(f"|error| {diff[at]:.3g} > {bound[at]:.3g} at index {at}")
    if agree is False:
        reasons.append("argmax differs")
    return Comparison(not reasons, max_abs, max_rel, worst, agree, "; ".join(reasons), drift)
