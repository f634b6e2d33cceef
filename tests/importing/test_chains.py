"""Done-when of issue 22: users' modules written after designs people deploy (a POS tagger,
a character LM, a CRNN head, a DeepAR-like forecaster, a sentiment biLSTM, a packed
(x, lengths) classifier, keyword spotting, a mean-pooled regressor, an embedding before a
cell loop; tests/importing/chain_models.py) go through `import --module`, export and
verify; every artifact, in all five runtimes, equals the user's own forward at shapes no
other test uses, and the stream artifacts hold ragged rows and chunked sequences."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.predict import check_stream_feeds
from pipeline.runtimes import STREAM_ARTIFACTS, artifact, load_runner, load_stream_runner

from .chain_models import CHAINS, chain_model

RUNTIMES = ("torchscript", "onnx", "openvino", "tract", "onnx-reference")
SHAPES = ((3, 23), (1, 6), (9, 2))        # batch x seq: no export example, no verify shape
STREAMED = [n for n, c in CHAINS.items() if c[4]]


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """(out, {name: spec}): each model imported with --module and exported (the export's
    own self-check runs model.* and the stream artifacts in ORT and TorchScript)."""
    out = tmp_path_factory.mktemp("chains")
    specs = {}
    for name, (cls, task, *_) in CHAINS.items():
        path = out / f"{name}_state.pt"
        torch.save(chain_model(name).state_dict(), path)
        specs[name] = import_model(ImportConfig(
            name, path, task, module=f"tests.importing.chain_models:{cls.__name__}",
            out=out), log=lambda s: None)["spec"]
        export(ExportConfig(name, out), log=lambda s: None)
    return out, specs


def _inputs(spec, rng, batch, seq):
    """Seeded inputs in the spec's kind, and ragged lengths (longest first) where it packs."""
    if spec.input_kind == "tokens":
        x = rng.integers(0, spec.input_size, (batch, seq)).astype(np.int64)
    else:
        x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
    feeds = {"input": x}
    if spec.takes_lengths:
        feeds["lengths"] = np.sort(rng.integers(1, seq + 1, batch))[::-1].copy()
        feeds["lengths"][0] = seq
    return feeds


def test_each_model_reads_as_its_chain(chains):
    _, specs = chains
    for name, (_, _, kind, per_step, streams, lengths) in CHAINS.items():
        spec = specs[name]
        assert (spec.input_kind, spec.per_step, spec.has_stream, spec.takes_lengths) == \
            (kind, per_step, streams, lengths), name
    kinds = {n: [layer.kind for layer in s.layers] for n, s in specs.items()}
    assert kinds["crnn"] == ["recurrent", "linear", "recurrent", "linear", "linear"]
    assert [r.how for r in specs["sentiment"].layers if r.kind == "readout"] == \
        ["final_state_both"]
    assert [r.how for r in specs["meanpool"].layers if r.kind == "readout"] == ["mean"]
    assert specs["embcell"].layers[1].form == "cell_loop"


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", CHAINS)
def test_artifacts_compute_the_users_forward(chains, name, runtime):
    out, specs = chains
    spec, theirs = specs[name], chain_model(name)
    runner = load_runner(runtime, spec, out / name / artifact(runtime))
    rng = np.random.default_rng(21)
    for batch, seq in SHAPES:
        feeds = _inputs(spec, rng, batch, seq)
        with torch.inference_mode():
            want = theirs(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        np.testing.assert_allclose(runner.run(feeds)["output"], want, atol=2e-5, rtol=2e-5,
                                   err_msg=f"{runtime} at {batch}x{seq}")


@pytest.mark.parametrize("runtime", ("torchscript", "onnx", "openvino"))
@pytest.mark.parametrize("name", STREAMED)
def test_stream_artifacts_compute_the_users_forward(chains, name, runtime):
    """Ragged rows from zero state equal each row alone; a sequence in chunks, the state
    carried, equals the whole (a per-step output: every chunk's steps, joined)."""
    out, specs = chains
    spec, theirs = specs[name], chain_model(name)
    runner = load_stream_runner(runtime, spec, out / name / artifact(runtime, stream=True))
    rng = np.random.default_rng(22)
    x = _inputs(spec, rng, 4, 15)["input"]
    lengths = np.array([15, 1, 8, 4])
    padded = x.copy()
    for i, n in enumerate(lengths):       # other values past each length
        padded[i, n:] = rng.integers(0, spec.input_size, padded[i, n:].shape) \
            if spec.input_kind == "tokens" else 1e3
    got = runner.run(check_stream_feeds({"input": padded, "lengths": lengths}, spec,
                                        "ragged"))["output"]
    with torch.inference_mode():
        for i, n in enumerate(lengths):
            row = [torch.from_numpy(x[i:i + 1, :n])] + \
                ([torch.tensor([n])] if spec.takes_lengths else [])
            want = theirs(*row).numpy()
            have = got[i:i + 1, :n] if spec.per_step else got[i:i + 1]
            np.testing.assert_allclose(have, want, atol=2e-5, rtol=2e-5,
                                       err_msg=f"{runtime} row {i} ({n} steps)")
    states, start, steps = {}, 0, []
    for n in (1, 9, 5):
        result = runner.run(check_stream_feeds({"input": x[:, start:start + n], **states,
                                                "lengths": np.full(4, n, np.int64)}, spec,
                                               "chunk"))
        states = {i: result[o] for i, o in spec.state_names}
        steps.append(result["output"])
        start += n
    with torch.inference_mode():
        whole = [torch.from_numpy(x)] + ([torch.full((4,), 15)] if spec.takes_lengths else [])
        want = theirs(*whole).numpy()
    have = np.concatenate(steps, axis=1) if spec.per_step else result["output"]
    np.testing.assert_allclose(have, want, atol=2e-5, rtol=2e-5,
                               err_msg=f"{runtime} chunked 1+9+5")


def test_no_stream_form_is_said_why(chains):
    out, specs = chains
    for name in ("crnn", "sentiment", "meanpool"):
        assert not set(STREAM_ARTIFACTS.values()) & {p.name for p in (out / name).iterdir()}
    assert "bidirectional" in specs["sentiment"].stream_refusal
    assert "mean readout" in specs["meanpool"].stream_refusal


def test_verify_every_runtime_from_the_cli(chains):
    out, _ = chains
    for name in ("tagger", "padded"):
        result = CliRunner().invoke(cli, ["verify", "--model", name, "--out", str(out),
                                          "--runtime", "all", "--shapes", "1x3,5x12",
                                          "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "checks passed" in result.output


def test_openvino_sees_only_the_contract_names(chains):
    """A chain's graph outputs carry no internal name besides the contract's."""
    import openvino as ov
    out, specs = chains
    for name in STREAMED:
        spec = specs[name]
        for stream, want in ((False, [spec.output]), (True, spec.stream_outputs)):
            compiled = ov.Core().compile_model(str(out / name / artifact("onnx", stream)), "CPU")
            assert [p.get_names() for p in compiled.outputs] == [{t.name} for t in want], name
