"""Issue 22's packed and deep chains (tests/importing/packed_models.py): a packed tagger
with pad_packed_sequence (with and without total_length), packed bidirectional layers (a
biLSTM classifier, a biGRU tagger) and three LSTM layers (6 stream states) go through
`import --module` and export; every artifact, in all five runtimes, equals the user's own
forward at ragged lengths and shapes no other test uses (batch 1, and a batch past the
native operators' limit, which takes the Scan), and the stream artifacts hold ragged rows
and chunked sequences. What the chain still cannot read is refused in one located line.

    .venv/bin/python -m pytest -q tests/importing/test_packed.py
"""
import re

import numpy as np
import onnx
import pytest
import torch

from pipeline.errors import InputError
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig, ImportRefused
from pipeline.importing import main as import_model
from pipeline.layers.chain import describe_chain
from pipeline.predict import PredictConfig
from pipeline.predict import main as predict
from pipeline.publishing.triton import parse_config, stream_config_pbtxt
from pipeline.runtimes import STREAM_ARTIFACTS, artifact, load_runner, load_stream_runner

from .chain_checks import check_artifact, check_stream, inputs
from .packed_models import PACKED, PACKED_REFUSALS, packed_model

RUNTIMES = ("torchscript", "onnx", "openvino", "tract", "onnx-reference")
# batch x seq (longest row): batch 1; the longest row shorter than seq (a forward without
# total_length returns max(lengths) steps); a batch above every native operator's limit
SHAPES = ((1, 7, None), (4, 13, 9), (5, 11, None), (460, 3, None))
STREAMED = [n for n, c in PACKED.items() if c[4]]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(out, {name: spec}, {name: notes}): each model imported with --module and exported once."""
    out = tmp_path_factory.mktemp("packed")
    specs, notes = {}, {}
    for name, (cls, task, *_) in PACKED.items():
        path = out / f"{name}_state.pt"
        torch.save(packed_model(name).state_dict(), path)
        result = import_model(ImportConfig(
            name, path, task, module=f"tests.importing.packed_models:{cls.__name__}",
            out=out), log=lambda s: None)
        specs[name], notes[name] = result["spec"], result["notes"]
        export(ExportConfig(name, out), log=lambda s: None)
    return out, specs, notes


def test_each_model_reads_as_its_chain(packed):
    _, specs, notes = packed
    for name, (_, _, kind, per_step, streams, lengths) in PACKED.items():
        spec = specs[name]
        assert (spec.input_kind, spec.per_step, spec.has_stream, spec.takes_lengths) == \
            (kind, per_step, streams, lengths), name
    rec = {n: [(r.cell, r.bidirectional, r.packed) for r in s.recurrent]
           for n, s in specs.items()}
    assert rec["pbilstm"] == [("lstm", True, True)] and rec["pbigru"] == [("gru", True, True)]
    assert rec["lstm3"] == [("lstm", False, False)] * 3
    assert len(specs["lstm3"].state_names) == 6
    assert [r.how for r in specs["pbilstm"].layers if r.kind == "readout"] == \
        ["final_state_both"]
    assert "bidirectional" in specs["pbigru"].stream_refusal
    for name in ("plast", "plastlen", "pgather", "pbilast"):     # each row's last valid step
        assert [r.how for r in specs[name].layers if r.kind == "readout"] == ["last_step"], name
    assert not any("max(lengths) steps" in n for n in notes["plast"])   # one row each: no seq
    assert "each row's last valid step's output" in describe_chain(specs["pbilast"])


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", PACKED)
def test_artifacts_compute_the_users_forward(packed, name, runtime):
    """Every position the user's forward returns, past each row's length included (there
    its pad_packed_sequence gives zeros, and the head what it makes of them)."""
    out, specs, _ = packed
    spec, theirs = specs[name], packed_model(name)
    runner = load_runner(runtime, spec, out / name / artifact(runtime))
    rng = np.random.default_rng(31)
    for batch, seq, longest in SHAPES:
        feeds = inputs(spec, rng, batch, seq, longest)
        if batch > 4 and spec.takes_lengths:      # unsorted, as enforce_sorted=False allows
            feeds["lengths"] = rng.permutation(feeds["lengths"])
        check_artifact(runner, spec, theirs, feeds, f"{runtime} at {batch}x{seq}")


@pytest.mark.parametrize("runtime", ("torchscript", "onnx", "openvino"))
@pytest.mark.parametrize("name", STREAMED)
def test_stream_artifacts_compute_the_users_forward(packed, name, runtime):
    out, specs, _ = packed
    spec = specs[name]
    runner = load_stream_runner(runtime, spec, out / name / artifact(runtime, stream=True))
    check_stream(runner, spec, packed_model(name), np.random.default_rng(32), runtime)


def test_bidirectional_has_no_stream_form(packed):
    out, _, _ = packed
    for name in ("pbilstm", "pbigru", "pbilast"):
        assert not set(STREAM_ARTIFACTS.values()) & {p.name for p in (out / name).iterdir()}


def test_six_states_are_every_stream_input_and_output(packed):
    """Three LSTM layers: the stream graph and both Triton stream configs list input,
    lengths and all 6 states in, output and all 6 out, in the spec's order."""
    out, specs, _ = packed
    spec = specs["lstm3"]
    graph = onnx.load(str(out / "lstm3" / "model_stream.onnx")).graph
    ins, outs = [t.name for t in spec.stream_inputs], [t.name for t in spec.stream_outputs]
    assert [i.name for i in graph.input] == ins and [o.name for o in graph.output] == outs
    assert ins[2:] == ["h_in", "c_in", "h_in_1", "c_in_1", "h_in_2", "c_in_2"]
    for runtime in ("stream_onnx", "stream_torchscript", "stream_openvino"):
        text = stream_config_pbtxt(spec, runtime)
        config = parse_config(text)
        names = ([t.name for t in config.input], [t.name for t in config.output]) \
            if config is not None else None
        assert names in ((ins, outs), None), runtime
        assert all(f'name: "{n}"' in text for n in ins + outs), runtime


@pytest.mark.parametrize("name", PACKED_REFUSALS)
def test_each_refusal_is_one_located_line_and_writes_nothing(tmp_path, name):
    cls, message = PACKED_REFUSALS[name]
    path = tmp_path / f"{name}.pt"
    torch.save(cls().state_dict(), path)
    out = tmp_path / "out"
    with pytest.raises(ImportRefused, match=re.escape(message)) as caught:
        import_model(ImportConfig(name, path, "classification", out=out,
                                  module=f"tests.importing.packed_models:{cls.__name__}"))
    assert "\n" not in str(caught.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("runtime", ("onnx", "torchscript"))
def test_predict_takes_each_rows_length_from_the_npz(packed, tmp_path, runtime):
    """A packed model (no stream form: bidirectional) gets ragged rows through predict: the
    .npz's `lengths` beside `input`; one out of 1..seq is refused in one line."""
    out, specs, _ = packed
    spec = specs["pbigru"]
    feeds = inputs(spec, np.random.default_rng(33), 3, 10)
    feeds["lengths"] = np.array([4, 10, 1])
    np.savez(tmp_path / "x.npz", **feeds)
    got = predict(PredictConfig("pbigru", tmp_path / "x.npz", runtime, out=out),
                  log=lambda s: None)["output"]
    with torch.inference_mode():
        want = packed_model("pbigru")(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
    np.savez(tmp_path / "bad.npz", input=feeds["input"], lengths=np.array([4, 11, 1]))
    with pytest.raises(InputError, match=r"lengths\[1\] = 11 is out of range") as caught:
        predict(PredictConfig("pbigru", tmp_path / "bad.npz", runtime, out=out))
    assert "\n" not in str(caught.value)
