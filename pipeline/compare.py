"""Compare a runtime's outputs with the reference: a function returning a report row.

An output passes when it has the reference's shape, holds no NaN or Inf, every element
satisfies |actual - expected| <= atol + rtol * |expected| (numpy.isclose's rule), and, for
a classifier, the argmax agrees on every row. Callers decide what a failure means.

    >>> c = compare(actual, expected, Tolerance(1e-5, 1e-5), classification=True)
    >>> c.passed, c.max_abs, c.reason
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

    def as_dict(self) -> dict:
        return asdict(self)


def compare(actual: np.ndarray, expected: np.ndarray, tol: Tolerance,
            classification: bool = False) -> Comparison:
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
    max_abs = float(diff.max(initial=0.0))
    nonzero = scale > 0
    max_rel = float((diff[nonzero] / scale[nonzero]).max(initial=0.0))
    worst = float((diff / bound).max(initial=0.0))
    agree = None
    if classification and actual.ndim == 2 and actual.size:
        agree = bool((actual.argmax(axis=1) == expected.argmax(axis=1)).all())
    reasons = []
    if worst > 1.0:
        at = tuple(int(i) for i in np.unravel_index(np.argmax(diff / bound), diff.shape))
        reasons.append(f"|error| {diff[at]:.3g} > {bound[at]:.3g} at index {at}")
    if agree is False:
        reasons.append("argmax differs")
    return Comparison(not reasons, max_abs, max_rel, worst, agree, "; ".join(reasons))
