"""`--shapes` values: "BxS,BxS" -> [(batch, seq), ...], shared by verify and bench.

    >>> parse_shapes("1x1, 64x500")
    [(1, 1), (64, 500)]
"""
from __future__ import annotations

import click


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """Parse "BxS,..." with B, S >= 1; ValueError says which item is malformed."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"{item.strip()!r} is not BATCHxSEQ (e.g. 64x500)")
        batch, seq = (int(p) for p in parts)
        if batch < 1 or seq < 1:
            raise ValueError(f"{item.strip()!r}: batch and seq must be >= 1")
        shapes.append((batch, seq))
    return shapes


class ShapesType(click.ParamType):
    """click type for `--shapes`: a malformed value is a usage error (exit 2)."""
    name = "BxS[,BxS...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_shapes(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
