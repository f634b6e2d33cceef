"""`import`: users' own state dicts (tests/importing/user_models.py) read whatever their
attribute names, checked against the users' forwards, and every refusal one line with
nothing written."""
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.checkpoint import load_checkpoint
from pipeline.cli import cli
from pipeline.importing import ImportConfig, ImportRefused, main

from .user_models import USERS, user_model

MODULE = "tests.importing.user_models"


def save(tmp_path, name, state=None, suffix=".pt"):
    path = tmp_path / f"{name}{suffix}"
    state = user_model(name).state_dict() if state is None else state
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("name", USERS)
def test_import_reads_the_architecture_and_computes_the_users_forward(tmp_path, name):
    factory, task, (cell, form, layers, bidirectional) = USERS[name]
    out = tmp_path / "out"
    relu = "relu" if cell == "rnn_relu" else None
    result = main(ImportConfig(name, save(tmp_path, name), task, relu,
                               module=f"{MODULE}:{factory.__name__}", out=out))
    spec = result["spec"]
    assert (spec.cell, spec.form, spec.num_layers, spec.bidirectional) == \
        (cell, form, layers, bidirectional)
    assert result["checked_shapes"] >= 3
    model, config = load_checkpoint(out / name)        # the canonical form, from disk
    assert config["recipe"].model == spec and config["recipe"].train is None
    source = config["recipe"].source
    assert source["sha256"] and source["module"] == f"{MODULE}:{factory.__name__}"
    theirs = user_model(name)
    for batch, seq in ((2, 9), (5, 31)):
        x = torch.randn(batch, seq, spec.input_size)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_safetensors_and_missing_biases(tmp_path):
    """A .safetensors file, and a GRU built with bias=False: its biases are zeros."""
    gru = torch.nn.GRU(3, 8, num_layers=2, bias=False, batch_first=True)
    head = torch.nn.Linear(8, 2, bias=False)
    state = {**{f"net.{k}": v for k, v in gru.state_dict().items()},
             **{f"top.{k}": v for k, v in head.state_dict().items()}}
    result = main(ImportConfig("nobias", save(tmp_path, "nobias", state, ".safetensors"),
                               "regression", out=tmp_path / "out"))
    assert any("bias" in n for n in result["notes"])
    model, _ = load_checkpoint(tmp_path / "out" / "nobias")
    x = torch.randn(3, 11, 3)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), head(gru(x)[0][:, -1]))


def test_relu_needs_saying_and_tanh_is_said_to_be_assumed(tmp_path):
    path = save(tmp_path, "relu2")
    assumed = main(ImportConfig("assumed", path, "regression", out=tmp_path / "o"))
    assert assumed["spec"].cell == "rnn_tanh"
    assert any("tanh assumed" in n for n in assumed["notes"])
    said = main(ImportConfig("said", path, "regression", nonlinearity="relu", out=tmp_path / "o"))
    assert said["spec"].cell == "rnn_relu"
    assert not any("tanh" in n for n in said["notes"])
    # with the user's module, its forward says relu: nothing assumed
    read = main(ImportConfig("read", path, "regression", module=f"{MODULE}:relu_stack",
                             out=tmp_path / "o"))
    assert read["spec"] == said["spec"].__class__(**{**said["spec"].__dict__, "name": "read"})
    assert not any("tanh" in n for n in read["notes"])
    # the wrong word beside the module: refused, not mis-exported
    with pytest.raises(ImportRefused, match="--nonlinearity tanh: your module's recurrent"):
        main(ImportConfig("wrong", path, "regression", nonlinearity="tanh",
                          module=f"{MODULE}:relu_stack", out=tmp_path / "o"))


def _state(name):
    return user_model(name).state_dict()


def _refusals(tmp_path):
    lstm = _state("churn")
    proj = torch.nn.LSTM(4, 8, proj_size=3, batch_first=True)
    two = {**{f"a.{k}": v for k, v in torch.nn.GRU(4, 8).state_dict().items()},
           **{f"b.{k}": v for k, v in torch.nn.GRU(4, 8).state_dict().items()},
           "h.weight": torch.zeros(2, 8), "h.bias": torch.zeros(2)}
    nan = dict(lstm)
    nan["body.weight_hh_l1"] = lstm["body.weight_hh_l1"].clone()
    nan["body.weight_hh_l1"][3, 4] = float("nan")
    wide = dict(lstm)
    wide["decision.weight"] = torch.zeros(3, 65)
    two_heads = {**lstm, "other.weight": torch.zeros(3, 64)}
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    whole = tmp_path / "whole.pt"
    torch.save(user_model("churn"), whole)                     # a pickled module
    (tmp_path / "out" / "taken").mkdir(parents=True)
    gates5 = {"r.weight_ih_l0": torch.zeros(40, 4), "r.weight_hh_l0": torch.zeros(40, 8),
              "h.weight": torch.zeros(2, 8)}
    one_logit = {**lstm, "decision.weight": torch.zeros(1, 64), "decision.bias": torch.zeros(1)}
    return [   # (name, file or state dict, config overrides, message)
        ("missing", tmp_path / "none.pt", {}, "no such file"),
        ("garbage", garbage, {}, "unreadable"),
        ("whole", whole, {}, "pickled Python objects"),
        ("proj", {**{f"rnn.{k}": v for k, v in proj.state_dict().items()},
                  "fc.weight": torch.zeros(2, 3)}, {}, "proj_size"),
        ("nohead", torch.nn.LSTM(4, 8).state_dict(), {}, "no Linear head"),
        ("twostacks", two, {}, "two candidate recurrent stacks"),
        ("twoheads", two_heads, {}, "two candidate heads"),
        ("wide", wide, {}, "inconsistent shapes"),
        ("nan", nan, {}, "NaN or Inf"),
        ("gates5", gates5, {}, "not 1 (RNN), 3 (GRU) or 4 (LSTM)"),
        ("taken", lstm, {}, "exists already"),
        ("bad-name", lstm, {}, "plain identifier"),
        ("forecaster", lstm, {}, "built-in recipe"),
        ("gru_relu", _state("sensor"), {"nonlinearity": "relu"}, "plain RNN weights"),
        ("onelogit", one_logit, {}, "one logit per class"),
        ("scaled", lstm, {"module": f"{MODULE}:scaled_lstm"}, "operator.mul at user_models.py:"),
        ("tupled", lstm, {"module": f"{MODULE}:tuple_lstm"}, "returns tuple"),
        ("nomodule", lstm, {"module": "tests.importing.nowhere:make"}, "cannot import"),
        ("wrongmod", lstm, {"module": f"{MODULE}:sensor_gru"}, "does not take these weights"),
    ]


def test_each_refusal_is_one_line_and_writes_nothing(tmp_path):
    for name, source, overrides, message in _refusals(tmp_path):
        path = source if not isinstance(source, dict) else save(tmp_path, f"s_{name}", source)
        before = sorted(p.name for p in (tmp_path / "out").iterdir())
        with pytest.raises(ImportRefused, match=re.escape(message)):
            main(ImportConfig(name, path, "classification", out=tmp_path / "out", **overrides))
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before, name


def test_cli_prints_what_it_found_and_refuses_in_one_line(tmp_path):
    path = save(tmp_path, "churn")
    runner = CliRunner()
    ok = runner.invoke(cli, ["import", "mine", "--weights", str(path), "--task",
                             "classification", "--out", str(tmp_path / "o")])
    assert ok.exit_code == 0, ok.output
    assert "nn.LSTM (lstm), 2 layers; input 16, hidden 64, head 64 -> 3" in ok.output
    assert "out[:, -1, :]" in ok.output                    # the head was assumed, and said so
    again = runner.invoke(cli, ["import", "mine", "--weights", str(path), "--task",
                                "classification", "--out", str(tmp_path / "o")])
    assert again.exit_code == 1 and "exists already" in again.output
    assert len(again.output.strip().splitlines()) == 1
    bad = runner.invoke(cli, ["import", "x", "--weights", str(path), "--task", "ranking"])
    assert bad.exit_code == 2
    config = json.loads((tmp_path / "o" / "mine" / "config.json").read_text())
    assert config["recipe"]["model"]["cell"] == "lstm" and config["metrics"] == {}


def test_imported_models_are_known_to_every_command(tmp_path):
    """--model takes the models under --out; an unknown one lists the known ones."""
    main(ImportConfig("mine", save(tmp_path, "sensor"), "regression", out=tmp_path))
    runner = CliRunner()
    unknown = runner.invoke(cli, ["export", "--model", "nope", "--out", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "known: forecaster, classifier, mine" in unknown.output
    train = runner.invoke(cli, ["train", "--model", "mine", "--out", str(tmp_path)])
    assert train.exit_code == 2 and "known: forecaster, classifier" in train.output
    x = np.zeros((2, 3, 6), np.float32)
    np.save(tmp_path / "x.npy", x)
    exported = runner.invoke(cli, ["export", "--model", "mine", "--out", str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    predicted = runner.invoke(cli, ["predict", "--model", "mine", "--out", str(tmp_path),
                                    "--input", str(tmp_path / "x.npy")])
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.strip().splitlines()) == 2          # one line per sequence
    np.savez(tmp_path / "s.npz", input=x, lengths=np.array([3, 1]))
    streamed = runner.invoke(cli, ["predict", "--model", "mine", "--out", str(tmp_path),
                                   "--input", str(tmp_path / "s.npz"), "--stream"])
    assert streamed.exit_code == 0 and streamed.stdout.count("h_out [") == 2, streamed.output
    timed = runner.invoke(cli, ["bench", "--model", "mine", "--out", str(tmp_path), "--shapes",
                                "2x5", "--runtime", "onnx", "--budget", "0.05", "--min-reps", "2"])
    assert timed.exit_code == 0, timed.output
    assert (tmp_path / "mine" / "benchmark.json").is_file()
