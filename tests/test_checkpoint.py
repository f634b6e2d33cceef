import json
import shutil

import pytest

from pipeline.checkpoint import load_checkpoint
from pipeline.errors import CheckpointError


@pytest.fixture
def copy(trained, tmp_path):
    shutil.copytree(trained["out"] / "forecaster", tmp_path / "forecaster")
    return tmp_path / "forecaster"


def test_round_trip_rebuilds_from_saved_spec(copy):
    model, config = load_checkpoint(copy)
    assert config["recipe"].model.name == "forecaster"
    assert not model.training


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_weights_are_a_clean_error(copy, damage):
    path = copy / "weights.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="weights.safetensors"):
        load_checkpoint(copy)


def test_weights_of_another_shape_are_refused(copy, trained):
    shutil.copy(trained["out"] / "classifier/weights.safetensors", copy / "weights.safetensors")
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(copy)


@pytest.mark.parametrize("text", ["{", "[]", '{"recipe": {"model": {"bogus": 1}}}'])
def test_bad_config_is_a_clean_error(copy, text):
    (copy / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(copy)


def test_config_is_plain_json(copy):
    data = json.loads((copy / "config.json").read_text())
    assert (data["recipe"]["model"]["cell"], data["recipe"]["model"]["form"]) == (
        "rnn_tanh", "cell_loop")
