"""The publishing command: publish (keygen and verify-release are in release.py)."""
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
@click.option("--signing-key", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="PEM ECDSA private key (`keygen` makes one) that signs each version folder "
              "(model.sig, OpenSSF model signing). Required unless --unsigned.")
@click.option("--unsigned", is_flag=True,
              help="Publish without a signature (the model card says so); consumers that "
              "check signatures refuse such versions.")
@click.option("--deploy", metavar="best|RUNTIME:PRECISION",
              help="Also publish a verified precision variant as its own Triton models: best = "
                   "every pair deployment.json (bench) chose, or e.g. onnx:int8, "
                   "openvino:bf16. A pair outside its budget is refused with its figures.")
@domain_errors
def publish(models, out, registry, version, signing_key, unsigned, deploy):
    """Publish verified models as immutable versions of a Triton model repository.

    Each model becomes <registry>/<model>_onnx/N/ and <model>_torchscript/N/ (with
    config.pbtxt beside them) and <model>-N.tar.gz beside the repository. Refuses a build
    whose verification.json is missing, failed, or judged other files than those on disk.
    Unchanged artifacts are a no-op; an existing version is never changed. Each version
    folder is signed with --signing-key; check it with `verify-release --public-key`.

    \b
    Example:
      python -m pipeline keygen .keys
      python -m pipeline publish --model forecaster --signing-key .keys/signing.key
    """
    from ..publishing.publish import PublishConfig, main

    if deploy and deploy != "best":          # one line, before any work: an unknown
        from ..precision import parse_pair   # precision, or a pair no backend serves
        from ..publishing.deploy import check_deployable
        check_deployable(*parse_pair(deploy))
    for name in selected(models, out):
        r = main(PublishConfig(name, out, registry, version, signing_key, unsigned, deploy),
                 log=lambda s: click.echo(s, err=True))
        signed = f"signed by {r['signed_by']}" if r["signed_by"] else "UNSIGNED"
        if r["published"]:
            click.echo(f"{name}: published version {r['version']} ({signed}) -> "
                       f"{', '.join(str(f) for f in r['folders'].values())}; {r['tarball']}")
        else:
            click.echo(f"{name}: unchanged, version {r['version']} already holds these artifacts "
                       f"({r['folders']['onnx'].parent.parent}); nothing published")
