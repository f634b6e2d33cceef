"""A KServe `InferenceService` for the signed repository: N replicas of Triton on Kubernetes.

    python -m pipeline kserve-manifest --storage-uri pvc://models/model_repository \
        --public-key .keys/signing.pub --replicas 3        # -> exported/inferenceservice.yaml
    kubectl apply -f exported/inferenceservice.yaml

Two documents: a ConfigMap holding the publisher's public key, and the InferenceService
(serving.kserve.io/v1beta1, checked against KServe v0.20.0's CRD schema in the tests): the
predictor's model is `modelFormat: triton`, `protocolVersion: v2`, `storageUri` the repository
root, served by KServe's `kserve-tritonserver` runtime (NVIDIA's image and C++ onnxruntime and
pytorch backends: the same config.pbtxt files), with CPU and memory requests equal to their
limits and OMP_NUM_THREADS set to the CPU count (a runtime sizing its thread pools from the
node's cores would oversubscribe a pod's share).

Where verify-release runs: in an init container of each replica, on the same files, before
the Triton container starts, which then never sees a version that fails its signature. The
storage is a PersistentVolumeClaim (`pvc://<claim>/<path>`): KServe mounts a claim straight
into the model container, so an init container can mount it too. An object-store URI
(s3://, gs://, https://) is refused: KServe downloads those with its storage-initializer init
container, which it appends after the pod's own (v0.20.0, pkg/webhook/admission/pod/
storage_initializer_injector.go), so a verifying init container would run before the files
exist. Copy the repository onto a claim instead (docs/serving.md shows how).

Replicas: `minReplicas` = N, `maxReplicas` = max(N, --max-replicas); deployment mode
`Standard` (plain Deployments; no Knative needed). Clients reach all replicas through the
service; state of a stream model is the client's (h_out sent back as h_in), so any replica
can answer any step.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import PublishError

KSERVE_VERSION = "v0.20.0"          # the release whose CRD schema the manifest is checked against
RUNTIME = "kserve-tritonserver"      # KServe's ClusterServingRuntime for Triton
MOUNT = "/mnt/models"                # where KServe puts the model storage in its container
KEY_DIR = "/etc/rnn-pipeline"
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)([numkMGTPE]|[KMGTPE]i)?")
PVC = re.compile(r"pvc://([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)(/(.*))?")


def cpu_threads(cpu: str) -> int:
    """Whole cores in a CPU quantity ("2" -> 2, "1500m" -> 1), at least 1."""
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(value))


def check_options(name: str, storage_uri: str, cpu: str, memory: str, namespace: str | None = None,
                  verify_image: str = "x") -> re.Match:
    """The PVC match of `storage_uri`; PublishError naming the first bad value."""
    for option, value in (("--name", name), ("--namespace", namespace)):
        if value is not None and not DNS_LABEL.fullmatch(value):
            raise PublishError(f"{option} {value!r}: a Kubernetes name is lowercase letters, "
                               "digits and '-', starting with a letter, at most 63 characters")
    if not verify_image or any(c.isspace() for c in verify_image):
        raise PublishError(f"--verify-image {verify_image!r}: not an image reference")
    found = PVC.fullmatch(storage_uri)
    if not found:
        raise PublishError(f"--storage-uri {storage_uri!r}: give pvc://<claim>/<path to the "
                           "repository>; KServe downloads object-store URIs after the pod's own "
                           "init containers, so verify-release could not check them first")
    for option, value in (("--cpu", cpu), ("--memory", memory)):
        if not QUANTITY.fullmatch(value) or float(re.match(r"[\d.]+", value).group()) <= 0:
            raise PublishError(f"{option} {value!r}: not a positive Kubernetes quantity "
                               "(e.g. 2, 1500m, 2Gi)")
    return found


def manifest(name: str, storage_uri: str, public_key_pem: str, replicas: int = 2,
             max_replicas: int | None = None, cpu: str = "2", memory: str = "2Gi",
             verify_image: str = "rnn-pipeline:0.1.0", namespace: str | None = None) -> list[dict]:
    """[ConfigMap with the public key, InferenceService]: Kubernetes objects as dicts."""
    pvc = check_options(name, storage_uri, cpu, memory, namespace, verify_image)
    claim, sub_path = pvc.group(1), (pvc.group(4) or "").strip("/")
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    key_map = f"{name}-signing-key"
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {**meta, "name": key_map},
                  "data": {"signing.pub": public_key_pem}}
    resources = {"requests": {"cpu": cpu, "memory": memory},
                 "limits": {"cpu": cpu, "memory": memory}}
    verify = {
        "name": "verify-release",
        "image": verify_image,
        "command": ["python", "-m", "pipeline", "verify-release", MOUNT,
                    "--public-key", f"{KEY_DIR}/signing.pub"],
        "volumeMounts": [{"name": "model-repository", "mountPath": MOUNT, "readOnly": True,
                          **({"subPath": sub_path} if sub_path else {})},
                         {"name": "signing-key", "mountPath": KEY_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"cpu": "1", "memory": "1Gi"}},
    }
    service = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {**meta, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": {
            "minReplicas": replicas,
            "maxReplicas": max(replicas, max_replicas or replicas),
            "model": {
                "modelFormat": {"name": "triton"},
                "protocolVersion": "v2",
                "runtime": RUNTIME,
                "storageUri": storage_uri,
                "resources": resources,
                "env": [{"name": "OMP_NUM_THREADS", "value": str(cpu_threads(cpu))}],
            },
            "initContainers": [verify],
            "volumes": [{"name": "model-repository",
                         "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                        {"name": "signing-key", "configMap": {"name": key_map}}],
        }},
    }
    return [config_map, service]


def to_yaml(documents: list[dict]) -> str:
    """YAML of plain dicts, lists, strings and numbers: strings double-quoted (JSON's escapes
    are YAML's), multi-line ones as literal blocks."""
    def scalar(value, indent):
        if isinstance(value, str) and "\n" in value:
            pad = " " * (indent + 2)
            return "|\n" + "".join(pad + line + "\n" for line in value.rstrip("\n").split("\n"))
        return json.dumps(value) + "\n"

    def emit(value, indent):
        pad, out = " " * indent, []
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (dict, list)) and item:
                    out.append(f"{pad}{key}:\n" + emit(item, indent + 2))
                else:
                    out.append(f"{pad}{key}: " + scalar(item, indent))
        else:
            for item in value:
                if isinstance(item, (dict, list)) and item:
                    text = emit(item, indent + 2)
                    out.append(f"{pad}- " + text[indent + 2:])
                else:
                    out.append(f"{pad}- " + scalar(item, indent))
        return "".join(out)

    return "".join("---\n" + emit(doc, 0) for doc in documents)


def write_manifest(registry: Path, public_key: Path, path: Path, **options) -> list[dict]:
    """Check every version of the repository with the key, then write the manifest."""
    from ..fsio import atomic_write_bytes
    from .trust import verify_registry

    check_options(**{k: options[k] for k in ("name", "storage_uri", "cpu", "memory",
                                             "namespace", "verify_image") if k in options})
    verify_registry(registry, public_key)      # never point a cluster at what fails here
    documents = manifest(public_key_pem=Path(public_key).read_text(), **options)
    # each served model's precision and its measured error (issue 23)
    from .deploy import precision_annotations
    documents[1]["metadata"]["annotations"].update(precision_annotations(registry))
    header = (f"# Generated by `python -m pipeline kserve-manifest` for {registry}\n"
              f"# (KServe {KSERVE_VERSION}; see docs/serving.md, \"Kubernetes with KServe\").\n")
    atomic_write_bytes(Path(path), (header + to_yaml(documents)).encode())
    return documents
