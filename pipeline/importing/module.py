"""`import --module MODULE:FACTORY`: the user's own module must compute what the canonical
form computes, or the import is refused.

The pipeline exports one network shape: the recurrent layers, then a linear head on the
last step's top-layer output. A user's forward that mean-pools over time, masks, adds a
layer without parameters (an activation before the head), or returns a tuple would be
exported as something it is not. So the factory's module gets the same weights (its own
keys, strictly) and both run on seeded random inputs at several batch x seq shapes; any
difference beyond the spec's tolerance refuses the import, naming the shape and the size.
"""
from __future__ import annotations

import importlib
import os
import sys

from ..errors import first_line
from ..specs import ModelSpec
from .statedict import ImportRefused

CHECK_SHAPES = ((1, 1), (3, 5), (2, 17), (4, 40))     # batch x seq, none an export example


def load_factory(target: str):
    """The callable named by "package.module:factory", imported from the user's path."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ImportRefused(f"--module {target!r}: give MODULE:FACTORY, e.g. mypkg.models:make")
    if os.getcwd() not in sys.path:          # the console script does not put . on the path
        sys.path.insert(0, os.getcwd())
    try:
        factory = importlib.import_module(module_name)
        for part in attr.split("."):
            factory = getattr(factory, part)
    except Exception as exc:   # ImportError, AttributeError, or the user's module raising
        raise ImportRefused(f"--module {target!r}: cannot import it ({first_line(exc)})") from None
    if not callable(factory):
        raise ImportRefused(f"--module {target!r}: {attr} is not callable")
    return factory


def check_module(target: str, state: dict, model, spec: ModelSpec) -> int:
    """Refuse unless FACTORY()'s forward equals `model` (the canonical form) on seeded inputs;
    return the number of shapes compared."""
    import torch
    from torch import nn

    try:
        theirs = load_factory(target)()
    except ImportRefused:
        raise
    except Exception as exc:
        raise ImportRefused(f"--module {target!r}: calling it failed ({first_line(exc)})") from None
    if not isinstance(theirs, nn.Module):
        raise ImportRefused(f"--module {target!r} returned {type(theirs).__name__}, not an "
                            "nn.Module")
    try:
        theirs.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ImportRefused(f"--module {target!r}: does not take these weights "
                            f"({first_line(exc)})") from None
    theirs = theirs.float().eval()
    tol = spec.tolerance("cpu")
    generator = torch.Generator().manual_seed(0)
    for batch, seq in CHECK_SHAPES:
        x = torch.randn(batch, seq, spec.input_size, generator=generator)
        with torch.inference_mode():
            expected = model(x)
            try:
                got = theirs(x)
            except Exception as exc:
                raise ImportRefused(f"--module {target!r}: its forward fails on a (batch {batch}, "
                                    f"seq {seq}, {spec.input_size}) input ({first_line(exc)})"
                                    ) from None
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
            what = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ImportRefused(f"--module {target!r}: its forward returns {what} at batch "
                                f"{batch}, seq {seq}; the pipeline exports one (batch, "
                                f"{spec.output_size}) tensor")
        diff = (got.float() - expected).abs()
        if bool((diff > tol.atol + tol.rtol * expected.abs()).any()):
            raise ImportRefused(
                f"--module {target!r}: its forward differs from the recurrent layers + linear "
                f"head on the last step's output (out[:, -1, :]) at batch {batch}, seq {seq}: "
                f"max abs difference {float(diff.max()):.3g}. The pipeline exports only that "
                "form; a forward that pools, masks or adds layers cannot be imported")
    return len(CHECK_SHAPES)
