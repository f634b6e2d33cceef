"""`import --module MODULE:FACTORY`: the user's own module must compute what the chain read
from it (trace.py) computes, or the import is refused.

The factory's module gets the weights (its own keys, strictly); the canonical model built
from the chain gets the same weights under its keys, and both run on seeded random inputs
at several batch x seq shapes, batch 1 included (token ids inside the vocabulary, ragged
lengths for a packed forward, the longest row shorter than seq at the last shape); any
difference beyond the spec's tolerance refuses the import, naming the shape and the size.
A packed per-step output of max(lengths) steps (pad_packed_sequence without total_length)
is compared on those steps: the artifacts give seq steps, of which those are the first. So whatever the reading missed (a functional call
fx saw but the chain does not hold, a cell loop recorded wrongly) is caught here.
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


def load_user_module(target: str, state: dict):
    """FACTORY() with the user's weights loaded strictly, in float32 eval mode."""
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
    return theirs.float().eval()


def check_inputs(spec: ModelSpec, batch: int, seq: int, generator, sorted_lengths=False,
                 longest: int | None = None):
    """Seeded torch inputs of the spec's contract: features, or ids inside the vocabulary;
    ragged lengths (row 0 `longest`, default seq) for a packed forward, longest first if
    it wants them so."""
    import torch

    if spec.input_kind == "tokens":
        x = torch.randint(0, spec.input_size, (batch, seq), generator=generator)
    else:
        x = torch.randn(batch, seq, spec.input_size, generator=generator)
    if not spec.takes_lengths:
        return (x,)
    longest = longest or seq
    lengths = torch.randint(1, longest + 1, (batch,), generator=generator)
    lengths[0] = longest
    if sorted_lengths:
        lengths = lengths.sort(descending=True).values
    return x, lengths


def check_module(target: str, theirs, model, spec: ModelSpec, read_as: str,
                 sorted_lengths: bool = False) -> int:
    """Refuse unless the user's module `theirs` computes what `model` (the canonical form
    of the chain read from it) computes on seeded inputs; return the number of shapes."""
    import torch

    tol = spec.tolerance("cpu")
    generator = torch.Generator().manual_seed(0)
    want = tuple(spec.output.shape)
    for batch, seq in CHECK_SHAPES:
        args = check_inputs(spec, batch, seq, generator, sorted_lengths,
                            seq - 1 if (batch, seq) == CHECK_SHAPES[-1] else None)
        with torch.inference_mode():
            expected = model(*args)
            try:
                got = theirs(*args)
            except Exception as exc:
                raise ImportRefused(f"--module {target!r}: its forward fails on a batch {batch}, "
                                    f"seq {seq} input ({first_line(exc)})") from None
        if isinstance(got, torch.Tensor) and spec.per_step and spec.takes_lengths and \
                got.dim() == 3 and got.size(1) == int(args[1].max()):
            expected = expected[:, :got.size(1)]     # pad_packed_sequence without total_length
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
            what = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ImportRefused(f"--module {target!r}: its forward returns {what} at batch "
                                f"{batch}, seq {seq}; the pipeline exports one "
                                f"{want} tensor")
        diff = (got.float() - expected).abs()
        if bool((diff > tol.atol + tol.rtol * expected.abs()).any()):
            raise ImportRefused(
                f"--module {target!r}: its forward differs from {read_as} at batch {batch}, "
                f"seq {seq}: max abs difference {float(diff.max()):.3g}; something in it is "
                "not a layer the pipeline reads (see README: Bring your own model)")
    return len(CHECK_SHAPES)
