import torch

from pipeline.checkpoint import load_checkpoint
from pipeline.specs import MODEL_NAMES, RECIPES
from pipeline.train import TrainConfig, main

from .seeds import seed_model


def test_short_training_reaches_targets(trained):
    f, c = trained["forecaster"], trained["classifier"]
    assert f["metric"] == "mse" and f["test"] <= 0.5 * f["baseline"]
    assert c["metric"] == "accuracy" and c["test"] >= 0.90 and 0.4 < c["baseline"] < 0.6


def test_weights_load_into_seed_classes(trained):
    from safetensors.torch import load_file
    for name in MODEL_NAMES:
        model, config = load_checkpoint(trained["out"] / name)
        seed = seed_model(config["recipe"].model)
        seed.load_state_dict(load_file(trained["out"] / name / "weights.safetensors"), strict=True)
        x = torch.randn(4, 9, config["recipe"].model.input_size)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), seed(x), rtol=0, atol=0)


def test_two_runs_give_identical_weights(tmp_path):
    from safetensors.torch import load_file
    for run in ("a", "b"):
        main(TrainConfig("classifier", tmp_path / run, epochs=1, progress=False), log=lambda s: None)
    a = load_file(tmp_path / "a/classifier/weights.safetensors")
    b = load_file(tmp_path / "b/classifier/weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_records_recipe_metrics_and_versions(trained):
    _, config = load_checkpoint(trained["out"] / "forecaster")
    assert config["recipe"].train.epochs == RECIPES["forecaster"].train.epochs
    assert set(config["metrics"]) >= {"test", "baseline", "val", "train_seconds"}
    assert {"python", "torch", "safetensors"} <= set(config["versions"])
