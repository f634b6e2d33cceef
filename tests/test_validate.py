"""config.json validated before use (issue 25, rows 6 and 7): each bad number is one line
naming its field, even when manifest.json was rewritten to match, so the manifest gate
passes and only the validation can tell."""
import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.manifest import check_manifest, read_manifest, write_manifest

from .perturb import noisy_onnx_weights
from .test_cli import one_line_error

MODEL = "classifier"


@pytest.fixture
def model_dir(exported, tmp_path):
    """This test's own copy of the exported classifier."""
    shutil.copytree(exported["out"] / MODEL, tmp_path / MODEL,
                    ignore=shutil.ignore_patterns(".lock"))
    return tmp_path / MODEL


def edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config["recipe"]["model"])
    (folder / "config.json").write_text(json.dumps(config))      # NaN is written as NaN
    old = read_manifest(folder)
    write_manifest(folder, list(old["files"]), **{k: v for k, v in old.items() if k != "files"})
    check_manifest(folder)                                       # the manifest gate passes


def verify(folder):
    return CliRunner().invoke(cli, ["verify", "--model", MODEL, "--out", str(folder.parent),
                                    "--device", "cpu"])


def test_a_nan_tolerance_does_not_turn_the_check_off(model_dir):
    """The table's row 6: atol NaN and a perturbed model.onnx; verify said 84 checks passed."""
    noisy_onnx_weights(model_dir / "model.onnx", model_dir / "model.onnx",
                       np.random.default_rng(0), scale=1e-3)
    edit_config(model_dir, lambda m: m["cpu_tolerance"].update(atol=math.nan))
    one_line_error(verify(model_dir), "config.json", "cpu_tolerance.atol is nan",
                   "finite number")
    assert not (model_dir / "verification.json").exists()


@pytest.mark.parametrize("field,value,needle", [
    ("hidden_size", 1e9, "hidden_size is 1000000000.0; must be an integer"),
    ("hidden_size", 10**9, "hidden_size is 1000000000; must be in 1..65,536"),
    ("num_layers", 10**6, "num_layers is 1000000; must be in 1..64"),
    ("input_size", True, "input_size is True; must be an integer"),
    ("output_size", "2", "output_size is '2'; must be an integer"),
    ("drift_factor", -1.0, "drift_factor is -1.0; must be >= 0"),
    ("hidden_size", 9, "rnn.weight_ih_l0 is (8, 5), but config.json's spec"),
    ("num_layers", 2, "has no rnn.weight_ih_l1"),
])
def test_each_bad_number_is_one_line_naming_its_field(model_dir, field, value, needle):
    """Row 7: hidden_size 1e9 was a traceback, num_layers 1e6 twelve minutes of CPU."""
    edit_config(model_dir, lambda m: m.update({field: value}))
    one_line_error(verify(model_dir), needle)


@pytest.mark.parametrize("path,value,needle", [
    (("model", "cuda_tolerance", "rtol"), -1e-4, "model.cuda_tolerance.rtol is -0.0001"),
    (("model", "cpu_tolerance", "atol"), math.inf, "model.cpu_tolerance.atol is inf"),
    (("model", "bidirectional"), 1, "model.bidirectional is 1; must be true or false"),
    (("model", "input_name"), "", "model.input_name is ''"),
    (("model", "example_seq"), 0, "model.example_seq is 0; must be in 1..100,000"),
    (("data", "seq_min"), 50, "data.seq_min 50 > data.seq_max 40"),
    (("train", "lr"), math.nan, "train.lr is nan"),
    (("train", "epochs"), 2.5, "train.epochs is 2.5; must be an integer"),
])
def test_every_number_of_the_recipe_is_checked(exported, path, value, needle):
    from pipeline.validate import check_recipe_dict
    recipe = json.loads((exported["out"] / MODEL / "config.json").read_text())["recipe"]
    check_recipe_dict(recipe)                                    # the good one passes
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValueError) as caught:
        check_recipe_dict(recipe)
    assert needle in str(caught.value)
