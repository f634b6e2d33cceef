import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline.cli import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, *needles):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], result.output


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_unknown_model():
    one_line_error(run("train", "--model", "gpt"), "gpt")


@pytest.mark.parametrize("opt,value", [("--epochs", "0"), ("--epochs", "x"), ("--seed", "-1")])
def test_bad_numbers(opt, value):
    one_line_error(run("train", opt, value), opt)


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(run("train", "--out", str(tmp_path / "f")), "f")


def test_out_cannot_be_created(tmp_path):
    (tmp_path / "f").write_text("x")
    one_line_error(run("train", "--out", str(tmp_path / "f" / "sub")), "sub")


def test_train_writes_checkpoint(tmp_path):
    result = run("train", "--model", "classifier", "--epochs", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "baseline" in result.output
    assert {p.name for p in (tmp_path / "classifier").iterdir()} >= {"weights.safetensors", "config.json"}


def test_module_entry_point_help_is_fast():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout
    assert " torch" not in proc.stderr, "--help must not import torch"
