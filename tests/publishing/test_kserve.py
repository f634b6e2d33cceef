"""kserve-manifest: the InferenceService validates offline against the vendored schema of the
pinned KServe release (kserve/README.md), read back with an independent YAML parser; the
verify-release init step looks at the very files Triton serves; bad options are one line."""
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.publishing.kserve import KSERVE_VERSION
from tests.test_cli import one_line_error

SCHEMA = Path(__file__).parent / "kserve" / f"inferenceservice-v1beta1-{KSERVE_VERSION}.schema.json"


def strict(schema):
    """The CRD schema with unknown fields refused, as the API server's strict field validation
    (kubectl's default) does; plain JSON Schema would accept a misspelled field."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validator():
    import jsonschema
    return jsonschema.Draft7Validator(strict(json.loads(SCHEMA.read_text())))


def errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def signed(verified, keys, tmp_path_factory):
    """A registry holding the forecaster, signed with key "a"."""
    from pipeline.publishing.publish import PublishConfig, main

    registry = tmp_path_factory.mktemp("kserve") / "registry"
    main(PublishConfig("forecaster", verified, registry, signing_key=keys["a"]["private"]),
         log=lambda s: None)
    return registry


def write(signed, keys, tmp_path, *extra):
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(cli, ["kserve-manifest", "--registry", str(signed), "--output",
                                      str(out), "--public-key", str(keys["a"]["public"]), *extra])
    return result, out


def test_manifest_is_a_valid_inference_service_for_the_repository(signed, keys, tmp_path, validator):
    result, out = write(signed, keys, tmp_path, "--storage-uri", "pvc://models/repo/v1",
                        "--replicas", "3", "--max-replicas", "6", "--cpu", "1500m",
                        "--memory", "3Gi", "--namespace", "ml")
    assert result.exit_code == 0, result.output
    config_map, service = yaml.safe_load_all(out.read_text())
    assert errors(validator, service) == []
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    assert service["metadata"]["namespace"] == "ml"
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "pvc://models/repo/v1"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 6)
    assert model["resources"]["requests"] == model["resources"]["limits"] == {"cpu": "1500m",
                                                                              "memory": "3Gi"}
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in model["env"]
    # verify-release runs first, on the claim and path KServe serves from, with the key shipped
    (init,) = predictor["initContainers"]
    assert init["command"][-4:] == ["verify-release", "/mnt/models", "--public-key",
                                    "/etc/rnn-pipeline/signing.pub"]
    volumes = {v["name"]: v for v in predictor["volumes"]}
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    repo = mounts["/mnt/models"]
    assert volumes[repo["name"]]["persistentVolumeClaim"]["claimName"] == "models"
    assert repo["subPath"] == "repo/v1" and repo["readOnly"] is True
    key_volume = volumes[mounts["/etc/rnn-pipeline"]["name"]]
    assert key_volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"]["signing.pub"] == Path(keys["a"]["public"]).read_text()


def test_the_schema_check_catches_what_the_cluster_would_refuse(signed, keys, tmp_path, validator):
    """The check is not a rubber stamp: a misspelled field, a wrong type, a bad quantity and a
    missing required field are each refused."""
    result, out = write(signed, keys, tmp_path, "--storage-uri", "pvc://models/repo")
    assert result.exit_code == 0, result.output
    _, good = yaml.safe_load_all(out.read_text())

    def broken(change):
        doc = json.loads(json.dumps(good))
        change(doc["spec"]["predictor"])
        return errors(validator, doc)

    assert broken(lambda p: p["model"].update(storageURI=p["model"].pop("storageUri")))
    assert broken(lambda p: p.update(minReplicas="3"))
    assert broken(lambda p: p["model"]["resources"]["limits"].update(cpu="two"))
    assert broken(lambda p: p["model"]["modelFormat"].pop("name"))
    assert broken(lambda p: p["initContainers"][0].pop("name"))


@pytest.mark.parametrize("args,needle", [
    (["--storage-uri", "s3://bucket/repo"], "give pvc://<claim>"),
    (["--storage-uri", "pvc://Bad_Claim/x"], "give pvc://<claim>"),
    (["--storage-uri", "pvc://m/r", "--name", "Bad_Name"], "--name 'Bad_Name'"),
    (["--storage-uri", "pvc://m/r", "--cpu", "lots"], "--cpu 'lots'"),
    (["--storage-uri", "pvc://m/r", "--cpu", "0"], "--cpu '0'"),
    (["--storage-uri", "pvc://m/r", "--memory", "-1Gi"], "--memory '-1Gi'"),
    (["--storage-uri", "pvc://m/r", "--replicas", "0"], "--replicas"),
    (["--storage-uri", "pvc://m/r", "--max-replicas", "x"], "--max-replicas"),
    ([], "--storage-uri"),
])
def test_bad_options_are_one_line(signed, keys, tmp_path, args, needle):
    result, out = write(signed, keys, tmp_path, *args)
    one_line_error(result, needle)
    assert not out.exists()


def test_a_repository_failing_the_key_gets_no_manifest(signed, keys, tmp_path):
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(cli, ["kserve-manifest", "--registry", str(signed), "--output",
                                      str(out), "--storage-uri", "pvc://m/r",
                                      "--public-key", str(keys["b"]["public"])])
    one_line_error(result, "forecaster")
    assert not out.exists()
