"""The publishing commands: publish."""
from __future__ import annotations

from pathlib import Path

import click

from .common import domain_errors, model_option, out_option, selected


@click.command()
@model_option
@out_option
@click.option("--registry", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Triton model repository to publish into. Default: <out>/model_repository.")
@click.option("--version", "version", type=click.IntRange(min=1), metavar="N",
              help="Version number to publish as. Default: one past the highest published.")
@domain_errors
def publish(models, out, registry, version):
    """Publish verified models as immutable versions of a Triton model repository.

    Each model becomes <registry>/<model>_onnx/N/ and <model>_torchscript/N/ (with
    config.pbtxt beside them) and <model>-N.tar.gz beside the repository. Refuses a build
    whose verification.json is missing, failed, or judged other files than those on disk.
    Unchanged artifacts are a no-op; an existing version is never changed.

    \b
    Example:
      python -m pipeline publish --model forecaster --registry /srv/triton/models
    """
    from ..publishing.publish import PublishConfig, main

    for name in selected(models):
        r = main(PublishConfig(name, out, registry, version), log=lambda s: click.echo(s, err=True))
        if r["published"]:
            click.echo(f"{name}: published version {r['version']} -> "
                       f"{', '.join(str(f) for f in r['folders'].values())}; {r['tarball']}")
        else:
            click.echo(f"{name}: unchanged, version {r['version']} already holds these artifacts "
                       f"({r['folders']['onnx'].parent.parent}); nothing published")
