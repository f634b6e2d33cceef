"""What every command shares: --model, --out, and one-line domain errors."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from ..errors import PipelineError
from ..specs import MODEL_NAMES


def model_option(fn):
    return click.option(
        "--model", "models", multiple=True, type=click.Choice(MODEL_NAMES),
        help="Model to process; repeat for several. Default: all models.")(fn)


def single_model_option(fn):
    """`--model NAME`, one model (same choices as `model_option`); commands that can take a
    published version folder instead check that exactly one of them is given."""
    return click.option(
        "--model", type=click.Choice(MODEL_NAMES),
        help="Model to run, from --out (or give --version-dir).")(fn)


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
             "--model; its own runtime is used. Needs --public-key.")(fn)


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


def selected(models: tuple[str, ...]) -> tuple[str, ...]:
    return models or MODEL_NAMES
