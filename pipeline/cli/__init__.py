"""The `pipeline` command line: one thin click command per stage.

    python -m pipeline --help
    python -m pipeline train --model forecaster --epochs 4

Each command parses its options, calls one stage's `main`, and prints the result. Domain
errors (`PipelineError`) and OS errors become one-line `click.ClickException`s: exit 1,
no traceback. Heavy libraries are imported inside the commands, so `--help` is instant.
A command's module is imported only when that command runs (or `--help` lists them all):
`score` is timed end to end, start-up included, against a bare loop (issue 23).
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping

import click

# One module per command group; a new command is added here in the order `--help` lists it:
# command name -> (module under pipeline.cli, attribute)
COMMANDS = {
    "train": ("stages", "train"), "import": ("importing", "import_model"),
    "export": ("stages", "export"), "verify": ("stages", "verify"),
    "predict": ("stages", "predict"), "score": ("scoring", "score"),
    "bench": ("stages", "bench"), "publish": ("publishing", "publish"),
    "keygen": ("release", "keygen"), "verify-release": ("release", "verify_release"),
    "serve": ("serving", "serve"), "loadtest": ("serving", "loadtest"),
    "kserve-manifest": ("deploy", "kserve_manifest"),
}
_ATTRIBUTES = {attr: module for module, attr in COMMANDS.values()}

__all__ = ["cli", *_ATTRIBUTES]


def _load(module: str, attr: str) -> click.Command:
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


class _Commands(MutableMapping):
    """The group's {name: command}, each imported the first time it is looked up."""

    def __init__(self):
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name):
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = _load(*COMMANDS[name])
        return self._loaded[name]

    def __setitem__(self, name, command):
        self._loaded[name] = command

    def __delitem__(self, name):
        del self._loaded[name]

    def __iter__(self):
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self):
        return len(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __contains__(self, name):
        return name in COMMANDS or name in self._loaded


class _LazyGroup(click.Group):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands = _Commands()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnn-pipeline")
def cli():
    """Train (or import), export, verify, benchmark, publish and serve RNN models.

    \b
    Example, the whole flow for the two built-in models into ./exported:
      python -m pipeline train && python -m pipeline export && python -m pipeline verify
    Your own nn.LSTM/GRU/RNN, from its state dict:
      python -m pipeline import mylstm --weights lstm.pt --task classification
    """


def __getattr__(name: str):
    """`from pipeline.cli import score` (and every other command) still works."""
    if name in _ATTRIBUTES:
        return _load(_ATTRIBUTES[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
