"""Shared fixtures: one short training run per model, reused by every test module."""
import pytest

from pipeline.specs import MODEL_NAMES


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """An artifact root with both models trained by their default recipes (a few seconds
    each): {"out": Path, name: metrics}. Shorter runs leave the classifier's recurrence
    worse conditioned than what `make all` ships, which the export checks then measure."""
    from pipeline.train import TrainConfig, main

    out = tmp_path_factory.mktemp("exported")
    result = {"out": out}
    for name in MODEL_NAMES:
        result[name] = main(TrainConfig(name, out, progress=False), log=lambda s: None)
    return result


@pytest.fixture(scope="session")
def exported(trained):
    """`trained`, plus both models exported (model.pt, model.onnx, manifest.json)."""
    from pipeline.export import ExportConfig, main

    for name in MODEL_NAMES:
        trained[name]["manifest"] = main(ExportConfig(name, trained["out"]), log=lambda s: None)
    return trained
