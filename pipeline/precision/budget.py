"""The accuracy budget: how far a (runtime, precision) pair may stray from eager fp32.

    >>> b = parse_budget("labels=99.5%,max=1%")     # the default
    >>> f = figures([actual], [expected], classification=True)
    >>> f["max_rel_std"], f["p999_rel_std"], f["label_agree"]
    >>> judge(f, b)                                  # [] when within, else the reasons

Figures over all outputs of the data (verification inputs, or the user's sequences):
errors are |actual - eager fp32| divided by the standard deviation of eager's outputs on
that same data, so a budget reads the same for logits of any scale: `max_rel_std` the
largest, `p999_rel_std` the 99.9th percentile; `label_agree` (classifiers) the fraction
of rows, or of steps in a stream, whose argmax agrees with eager's. Default: labels agree
on at least 99.5%, the max error is at most 1% of the std. Both must hold, on the
stateless data and after a long stream (gate.py). The fp32 tolerance rule of verify
(compare.py) is separate and unchanged: fp32 is judged by it, the variants by this.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import PipelineError


@dataclass(frozen=True)
class Budget:
    label_agree: float = 0.995     # fraction of rows (or stream steps) whose argmax agrees
    max_rel_std: float = 0.01      # max |error| / std(eager output)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"labels >= {100 * self.label_agree:g}%, max error <= {100 * self.max_rel_std:g}% of std"


DEFAULT_BUDGET = Budget()


def _fraction(text: str, key: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise PipelineError(f"--budget {key}={text!r}: not a number (e.g. {key}=1%)") from None
    if not 0 <= value <= 1:
        raise PipelineError(f"--budget {key}={text!r}: must be within 0..100%")
    return value


def parse_budget(text: str | None) -> Budget:
    """"labels=99.5%,max=1%" (either part may be left out; plain fractions work too)."""
    if not text:
        return DEFAULT_BUDGET
    values = asdict(DEFAULT_BUDGET)
    keys = {"labels": "label_agree", "max": "max_rel_std"}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in keys:
            raise PipelineError(f"--budget {item.strip()!r}: give labels=PCT and/or max=PCT, "
                                "e.g. labels=99.5%,max=1%")
        values[keys[key.strip()]] = _fraction(value, key.strip())
    return Budget(**values)


def figures(actual: list, expected: list, classification: bool) -> dict:
    """Budget figures of outputs (lists of (rows, outputs) arrays, paired) against eager."""
    a = np.concatenate([np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1]) for x in actual])
    e = np.concatenate([np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
                        for x in expected])
    if not np.isfinite(a).all():
        return {"rows": len(e), "std": float(e.std()), "max_abs": float("inf"),
                "max_rel_std": float("inf"), "p999_rel_std": float("inf"),
                "label_agree": 0.0 if classification else None}
    std = float(e.std()) or 1.0          # constant outputs: errors in absolute units
    err = np.abs(a - e)
    return {"rows": len(e), "std": float(e.std()), "max_abs": float(err.max(initial=0.0)),
            "max_rel_std": float(err.max(initial=0.0) / std),
            "p999_rel_std": float(np.quantile(err, 0.999) / std) if err.size else 0.0,
            "label_agree": float((a.argmax(1) == e.argmax(1)).mean())
            if classification and e.shape[1] > 1 else None}


def judge(fig: dict, budget: Budget, where: str = "") -> list[str]:
    """Why `fig` is outside `budget` (empty: within)."""
    at = f" {where}" if where else ""
    reasons = []
    if not fig["max_rel_std"] <= budget.max_rel_std:
        reasons.append(f"max error {_pct(fig['max_rel_std'])} of std > "
                       f"{_pct(budget.max_rel_std)}{at}")
    if fig.get("label_agree") is not None and fig["label_agree"] < budget.label_agree:
        reasons.append(f"labels agree {_pct(fig['label_agree'])} < "
                       f"{_pct(budget.label_agree)}{at}")
    return reasons


def _pct(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{100 * x:.3g}%"


def f32_note(entry: dict) -> str:
    """"layers 2 kept f32" / "every node kept f32: computes f32" for a bf16 pair whose
    files keep recurrent layers f32 (bf16.choose_form); "" otherwise."""
    layers = entry.get("f32_layers")
    if layers == "all":
        return "every node kept f32: computes f32"
    if layers:
        return f"layer{'s' * (len(layers) > 1)} {', '.join(str(i + 1) for i in layers)} kept f32"
    return ""


def describe(entry: dict) -> str:
    """One line: a pair's figures and verdict, e.g. for a refusal."""
    f, s = entry.get("figures") or {}, entry.get("stream") or {}
    note = f32_note(entry)
    parts = [f"{entry['runtime']}:{entry['precision']}" + (f" ({note})" if note else "")]
    if f:
        parts.append(f"max error {_pct(f['max_rel_std'])} of std (p99.9 "
                     f"{_pct(f['p999_rel_std'])})")
        if f.get("label_agree") is not None:
            parts.append(f"labels agree {_pct(f['label_agree'])}")
    if s:
        parts.append(f"after a {s['steps']}-step stream max error {_pct(s['max_rel_std'])}")
    r = entry.get("stream_ragged") or {}
    if r:
        parts.append(f"on ragged stream calls {_pct(r['max_rel_std'])}")
    verdict = entry.get("status", "passed" if entry.get("passed") else "failed")
    why = f": {entry['reason']}" if entry.get("reason") else ""
    return f"{', '.join(parts)} -- {verdict}{why}"
