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
from pipeline.runtimes import STREAM_ARTIFACTS, artifact, load_runner, load_stream_runner

from .chain_checks import check_artifact, check_stream, inputs
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
        check_artifact(runner, spec, theirs, inputs(spec, rng, batch, seq),
                       f"{runtime} at {batch}x{seq}")


@pytest.mark.parametrize("runtime", ("torchscript", "onnx", "openvino"))
@pytest.mark.parametrize("name", STREAMED)
def test_stream_artifacts_compute_the_users_forward(chains, name, runtime):
    """Ragged rows from zero state equal each row alone; a sequence in chunks, the state
    carried, equals the whole (a per-step output: every chunk's steps, joined)."""
    out, specs = chains
    spec, theirs = specs[name], chain_model(name)
    runner = load_stream_runner(runtime, spec, out / name / artifact(runtime, stream=True))
    check_stream(runner, spec, theirs, np.random.default_rng(22), runtime)


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
