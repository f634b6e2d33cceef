"""The deployment command: kserve-manifest (a KServe InferenceService for the repository)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import domain_errors


@click.command("kserve-manifest")
@click.option("--registry", default="exported/model_repository", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="The published repository; every version must verify with --public-key.")
@click.option("--storage-uri", required=True, metavar="pvc://CLAIM/PATH",
              help="Where the cluster finds the repository root: a PersistentVolumeClaim and "
                   "the path of the repository on it.")
@click.option("--public-key", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The publisher's signing.pub; each replica's verify-release init step checks "
                   "every version with it before Triton starts.")
@click.option("--name", default="rnn-pipeline", show_default=True, help="InferenceService name.")
@click.option("--namespace", help="Kubernetes namespace. Default: kubectl's current one.")
@click.option("--replicas", type=click.IntRange(min=1), default=2, show_default=True,
              help="Triton replicas behind the service (minReplicas).")
@click.option("--max-replicas", type=click.IntRange(min=1),
              help="Let the autoscaler go up to this many. Default: --replicas.")
@click.option("--cpu", default="2", show_default=True,
              help="CPU per replica (request = limit); OMP_NUM_THREADS is set to its whole cores.")
@click.option("--memory", default="2Gi", show_default=True, help="Memory per replica.")
@click.option("--verify-image", default="rnn-pipeline:0.1.0", show_default=True,
              help="Image with this package installed, for the verify-release init step.")
@click.option("--output", "output", default="exported/inferenceservice.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Manifest file to write.")
@domain_errors
def kserve_manifest(registry, storage_uri, public_key, name, namespace, replicas, max_replicas,
                    cpu, memory, verify_image, output):
    """Write a KServe InferenceService that serves the signed repository with N replicas.

    Checks every published version with --public-key first. The manifest (KServe v0.20,
    Triton runtime, protocol v2) holds a ConfigMap with the public key and the
    InferenceService whose replicas each run verify-release on the repository before Triton
    starts. Copy the repository to the claim, then `kubectl apply -f` the file.

    \b
    Example:
      python -m pipeline kserve-manifest --storage-uri pvc://models/model_repository \\
          --public-key .keys/signing.pub --replicas 3
    """
    from ..publishing.kserve import write_manifest

    write_manifest(registry, public_key, output, name=name, storage_uri=storage_uri,
                   replicas=replicas, max_replicas=max_replicas, cpu=cpu, memory=memory,
                   verify_image=verify_image, namespace=namespace)
    click.echo(f"{output}: InferenceService {name!r}, {replicas} replicas of Triton on "
               f"{storage_uri}; apply with `kubectl apply -f {output}`")
