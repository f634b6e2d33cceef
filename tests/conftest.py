"""Shared fixtures: one short training run per model, reused by every test module."""
import pytest

from pipeline.specs import MODEL_NAMES


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """An artifact root with both models trained for two epochs: {"out": Path, name: metrics}."""
    from pipeline.train import TrainConfig, main

    out = tmp_path_factory.mktemp("exported")
    result = {"out": out}
    for name in MODEL_NAMES:
        result[name] = main(TrainConfig(name, out, epochs=2, progress=False), log=lambda s: None)
    return result


@pytest.fixture(scope="session")
def exported(trained):
    """`trained`, plus both models exported (model.pt, model.onnx, manifest.json)."""
    from pipeline.export import ExportConfig, main

    for name in MODEL_NAMES:
        trained[name]["manifest"] = main(ExportConfig(name, trained["out"]), log=lambda s: None)
    return trained
