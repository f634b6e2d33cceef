"""What every command shares: --model, --out, and one-line domain errors."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import click

from ..errors import PipelineError
from ..specs import MODEL_NAMES


def model_option(fn):
    return click.option(
        "--model", "models", multiple=True, metavar="NAME",
        help="Model to process: a built-in recipe or any model under --out (trained or "
             "imported); repeat for several. Default: every model under --out.")(fn)


def single_model_option(fn):
    """`--model NAME`, one model (checked like `model_option`'s, with `selected`); commands
    that can take a published version folder instead check that exactly one is given."""
    return click.option(
        "--model", metavar="NAME",
        help="Model to run, from --out: a built-in recipe or an imported model (or give "
             "--version-dir).")(fn)


def version_dir_options(fn):
    """`--version-dir DIR --public-key FILE`: a published version, loaded once its signature
    checks out (commands that take it check that the two come together)."""
    fn = click.option(
        "--public-key", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
        help="Publisher's PEM public key: --version-dir is loaded only if its signature "
             "and every file's hash check out.")(fn)
    return click.option(
        "--version-dir", metavar="DIR",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="A published version folder (<registry>/<model>_onnx/N) to run instead of "
             "--model; it runs its own file (runtime and precision: --runtime is refused "
             "beside it). Needs --public-key.")(fn)


def refuse_beside_version_dir(version_dir, *names: str) -> None:
    """A published version folder runs its own file (its runtime and precision are in its
    signed manifest): any of the options `names` given on the command line beside
    --version-dir is one line, not silently ignored."""
    if version_dir is None:
        return
    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in names
             if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise click.UsageError(f"{', '.join(given)} with --version-dir: a published version "
                               f"folder runs its own file ({version_dir}); drop "
                               f"{', '.join(given)}, or give --model instead")


def out_option(fn):
    return click.option(
        "--out", default="exported", show_default=True, metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Artifact root; each model lives in DIR/<model>/.")(fn)


def domain_errors(fn):
    """Turn expected failures into one line on stderr and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
    return wrapper


def model_name(ctx, param, value):
    """A click callback: a model name is a plain identifier (a folder and Triton name part)."""
    if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise click.BadParameter(f"{value!r} is not a model name (letters, digits, _)")
    return value


def found_models(out: Path) -> tuple[str, ...]:
    """Model folders under `out`: those holding a config.json (trained or imported), named
    as a model can be (not a killed import's `.tmp-*` folder)."""
    out = Path(out)
    return tuple(sorted(p.parent.name for p in out.glob("*/config.json")
                        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p.parent.name))) \
        if out.is_dir() else ()


def selected(models: tuple[str, ...], out: Path, choices: tuple[str, ...] | None = None
             ) -> tuple[str, ...]:
    """The --model names, checked against the known ones (default: the built-in recipes
    and every model under `out`); none given: the models under `out`, else the recipes."""
    found = found_models(out)
    known = choices if choices is not None else tuple(dict.fromkeys([*MODEL_NAMES, *found]))
    for name in models:
        if name not in known:
            raise click.BadParameter(f"unknown model {name!r}; known: {', '.join(known)}",
                                     param_hint="'--model'")
    return models or (found if choices is None and found else MODEL_NAMES)
