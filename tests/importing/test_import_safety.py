"""Import against a hostile or unlucky world (issue 25, rows 8, 11 and 12): names the layout
uses, a SIGKILL after each rename, a pickle that must never be unpickled."""
import os
import subprocess
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

from pipeline.checkpoint import load_checkpoint
from pipeline.cli import cli
from pipeline.cli.common import found_models
from pipeline.errors import PipelineError
from pipeline.fsio import model_lock

from ..killer import run_killed
from ..test_cli import one_line_error
from .test_import import save
from .user_models import user_model


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("name", ["model_repository", "soak", "Model_Repository"])
def test_a_name_the_layout_uses_is_refused(tmp_path, name):
    result = invoke("import", name, "--weights", save(tmp_path, "churn"), "--task",
                    "classification", "--out", tmp_path / "out")
    one_line_error(result, f"model name {name!r}", "uses for itself")
    assert not (tmp_path / "out" / name).exists()


def test_a_lock_held_by_this_thread_is_refused_not_waited_for(tmp_path):
    """The hang of row 8: publish locked the model folder, then the registry, both the same
    folder. Now the second lock is one line, at once."""
    with model_lock(tmp_path / "m"):
        with pytest.raises(PipelineError, match="already locked by this run"):
            with model_lock(tmp_path / "m"):
                pass
        with pytest.raises(PipelineError, match="already locked by this run"):
            with model_lock(tmp_path / "m" / "."):
                pass
    with model_lock(tmp_path / "m"):     # released: taken again
        pass


def test_publish_into_its_own_model_folder_is_one_line_not_a_hang(tmp_path):
    """--registry naming the model folder itself: the same .lock twice. Run in a child with a
    timeout, so a regression hangs that child, not the suite."""
    out = tmp_path / "out"
    (out / "m").mkdir(parents=True)
    (out / "m" / "config.json").write_text("{}")          # found as a model by --model
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "publish", "--model", "m", "--out", str(out),
         "--registry", str(out / "m"), "--unsigned"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "already locked by this run" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


RENAMES = 3     # weights, config (inside the temp folder), then the folder itself


@pytest.mark.parametrize("n", range(1, RENAMES + 1))
def test_a_kill_after_each_rename_leaves_nothing_that_blocks(tmp_path, n):
    out, weights = tmp_path / "out", save(tmp_path, "churn")
    script = ("from pathlib import Path\nfrom pipeline.importing import ImportConfig, main\n"
              f"main(ImportConfig('kim', Path({str(weights)!r}), 'classification', "
              f"out=Path({str(out)!r})))\n")
    assert run_killed(script, n) == -9
    complete = (out / "kim").exists()
    assert complete == (n == RENAMES)       # the folder appears whole, or not at all
    if complete:
        load_checkpoint(out / "kim")
    again = invoke("import", "kim", "--weights", weights, "--task", "classification",
                   "--out", out)
    if complete:
        one_line_error(again, "exists already")
    else:
        assert again.exit_code == 0, again.output
    assert found_models(out) == ("kim",)
    assert sorted(os.listdir(out)) == ["kim"]              # the temp folder swept
    assert sorted(os.listdir(out / "kim")) == ["config.json", "weights.safetensors"]
    model, _ = load_checkpoint(out / "kim")
    theirs = user_model("churn")
    theirs.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_a_refused_pickle_gets_our_line_and_never_the_advice_to_unpickle(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(user_model("churn"), whole)                 # a pickled module, not a state dict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("import", "w", "--weights", whole, "--task", "classification",
                        "--out", tmp_path / "out")
    one_line_error(result, "pickled Python objects", "state_dict()", ".safetensors",
                   "runs code from the file")
    assert "weights_only" not in result.output and "will likely succeed" not in result.output
    assert [str(w.message) for w in caught] == []
    done = subprocess.run([sys.executable, "-m", "pipeline", "import", "w", "--weights",
                           str(whole), "--task", "classification", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "weights_only" not in done.stderr + done.stdout, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "out" / "w").exists()
