"""`BxS,BxS` shape lists for the command line: `--shapes 1x1,64x500` -> [(1, 1), (64, 500)].

One parser for every command that takes `--shapes` (bench, verify): `parse_shapes` raises
ValueError with the offending item; `ShapesParam` turns that into a click usage error.

    >>> parse_shapes("1x50, 64x200")
    [(1, 50), (64, 200)]
"""
from __future__ import annotations

import click


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'BxS,BxS' (batch x seq, both >= 1; spaces and 'X' allowed) -> [(batch, seq), ...]."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"{item.strip()!r} is not BATCHxSEQ (e.g. 64x200)")
        batch, seq = (int(p) for p in parts)
        if batch < 1 or seq < 1:
            raise ValueError(f"{item.strip()!r}: batch and seq must be >= 1")
        shapes.append((batch, seq))
    return shapes


class ShapesParam(click.ParamType):
    """click type for `--shapes`: a usage error (exit 2) naming the bad item."""
    name = "BxS,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return parse_shapes(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
