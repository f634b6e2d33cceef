"""The signing commands: keygen, verify-release (publish --signing-key is in publishing.py)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import domain_errors, model_name


@click.command()
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@domain_errors
def keygen(folder):
    """Write a new ECDSA P-256 key pair: DIR/signing.key (private, mode 0600) and
    DIR/signing.pub (public, for consumers).

    Never overwrites: if either file exists, nothing is written and the command fails. The
    private key is not encrypted; keep it out of version control (make's default, .keys/,
    is git-ignored).

    \b
    Example:
      python -m pipeline keygen .keys
      python -m pipeline publish --signing-key .keys/signing.key
    """
    from ..publishing.signing import keygen as make_keys

    keys = make_keys(folder)
    click.echo(f"wrote {keys['private']} (private, mode 0600: keep it secret) and "
               f"{keys['public']} (give it to consumers); fingerprint {keys['fingerprint']}")


@click.command("verify-release")
@click.argument("path", metavar="PATH", type=click.Path(exists=True, path_type=Path))
@click.option("--public-key", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="PEM public key of the publisher (keygen's signing.pub).")
@click.option("--model", metavar="NAME", callback=model_name,
              help="Only this model's versions (when PATH is a registry or a tarball).")
@domain_errors
def verify_release(path, public_key, model):
    """Check that published versions are signed by --public-key and unchanged since.

    PATH is a version folder (<registry>/<model>_onnx/3), a Triton model folder (all its
    versions), a registry (all versions of every model, or of --model), or a release
    tarball (<model>-N.tar.gz, unpacked safely into a temporary folder first). For each
    version folder: the signature (model.sig) must verify with the key, every file must
    hash to its signed digest (none added or removed), and the folder must sit where its
    signed manifest.json says (model and version). Exit 0 only when every version holds;
    otherwise one line naming the file that differs or why the signature is rejected.

    \b
    Example:
      python -m pipeline verify-release exported/forecaster-1.tar.gz --public-key .keys/signing.pub
      python -m pipeline verify-release exported/model_repository --public-key .keys/signing.pub
    """
    from ..publishing.trust import verify_release as verify

    for r in verify(path, public_key, model):
        click.echo(f"{r['folder']}: signature OK ({r['fingerprint']}), {len(r['files'])} files "
                   f"re-hashed, {r['model']} version {r['version']} ({r['runtime']})")
