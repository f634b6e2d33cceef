"""The `pipeline` command line: one thin click command per stage.

    python -m pipeline --help
    python -m pipeline train --model forecaster --epochs 4

Each command parses its options, calls one stage's `main`, and prints the result. Domain
errors (`PipelineError`) and OS errors become one-line `click.ClickException`s: exit 1,
no traceback. Heavy libraries are imported inside the commands, so `--help` is instant.
"""
from __future__ import annotations

import click

from .deploy import kserve_manifest
from .importing import import_model
from .publishing import publish
from .release import keygen, verify_release
from .scoring import score
from .serving import loadtest, serve
from .stages import bench, export, predict, train, verify

__all__ = ["cli", "train", "import_model", "export", "verify", "predict", "score", "bench",
           "publish", "keygen", "verify_release", "serve", "loadtest", "kserve_manifest"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rnn-pipeline")
def cli():
    """Train (or import), export, verify, benchmark, publish and serve RNN models.

    \b
    Example, the whole flow for the two built-in models into ./exported:
      python -m pipeline train && python -m pipeline export && python -m pipeline verify
    Your own nn.LSTM/GRU/RNN, from its state dict:
      python -m pipeline import mylstm --weights lstm.pt --task classification
    """


# One module per command group; a new command is added here in the order `--help` lists it.
for command in (train, import_model, export, verify, predict, score, bench, publish, keygen,
                verify_release, serve, loadtest, kserve_manifest):
    cli.add_command(command)
