"""Every stage with chains of layers (issue 22): predict reads token ids and writes per-step
outputs, bench counts FLOPs per layer, publish writes TYPE_INT64 inputs, per-step dims and
every state tensor, the card describes the chain. The reference is the user's own module."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify

from .importing.chain_models import CHAINS, chain_model

MODELS = ("tagger", "padded")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A tagger (token ids, per-step log-probabilities, LSTM states) and the packed
    classifier, imported, exported and verified."""
    out = tmp_path_factory.mktemp("stages")
    for name in MODELS:
        cls, task = CHAINS[name][:2]
        path = out / f"{name}.pt"
        torch.save(chain_model(name).state_dict(), path)
        import_model(ImportConfig(name, path, task, module=f"tests.importing.chain_models:"
                                  f"{cls.__name__}", out=out), log=lambda s: None)
        export(ExportConfig(name, out), log=lambda s: None)
        verify(VerifyConfig(name, out, "cpu", shapes=((1, 4), (3, 9))), log=lambda s: None)
    return out


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_predict_reads_token_ids_and_writes_every_step(out, tmp_path, runtime):
    ids = np.random.default_rng(3).integers(0, 50, (4, 11))
    np.save(tmp_path / "ids.npy", ids)
    result = run("predict", "--model", "tagger", "--out", out, "--input", tmp_path / "ids.npy",
                 "--runtime", runtime, "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    with torch.inference_mode():
        want = chain_model("tagger")(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=2e-5, rtol=2e-5)
    (tmp_path / "one.csv").write_text("\n".join(str(i) for i in ids[0]) + "\n")
    printed = run("predict", "--model", "tagger", "--out", out, "--input", tmp_path / "one.csv")
    assert printed.exit_code == 0, printed.output
    assert f"0: classes per step [{', '.join(str(c) for c in want[0].argmax(-1))}]" in \
        printed.output


@pytest.mark.parametrize("ids, needle", [
    (np.array([[1, 2, 50]]), "token id 50 at index (0, 2) is outside the vocabulary 0..49"),
    (np.array([[1, -1]]), "token id -1"),
    (np.array([[0.5, 2.0]]), "takes integer token ids"),
    (np.zeros((2, 3, 4), np.int64), "rank 2 (batch, seq)")])
def test_token_input_violations_are_one_line(out, tmp_path, ids, needle):
    np.save(tmp_path / "bad.npy", ids)
    result = run("predict", "--model", "tagger", "--out", out, "--input", tmp_path / "bad.npy")
    assert result.exit_code != 0 and needle in result.output
    assert result.output.strip().count("\n") == 0


def test_predict_runs_a_packed_model_at_full_length(out, tmp_path):
    x = np.random.default_rng(4).standard_normal((3, 8, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run("predict", "--model", "padded", "--out", out, "--input", tmp_path / "x.npy",
                 "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    with torch.inference_mode():
        want = chain_model("padded")(torch.from_numpy(x), torch.full((3,), 8)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=2e-5, rtol=2e-5)


def test_bench_counts_flops_per_layer(out):
    result = run("bench", "--model", "tagger", "--out", out, "--shapes", "1x5", "--budget", "0",
                 "--min-reps", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "tagger" / "benchmark.json").read_text())
    layers = report["flops_per_layer"]["1x5"]
    assert [words.split(" ")[0] for words, _ in layers] == \
        ["Embedding", "`nn.LSTM(batch_first=True)`", "Linear", "log_softmax"]
    assert layers[1][1] == 5 * 2 * 4 * 16 * (12 + 16)          # 4 gates, H 16, F 12, 5 steps
    assert layers[2][1] == 5 * 2 * 16 * 5
    assert report["flops"]["1x5"] == sum(n for _, n in layers)
    assert "FLOPs per layer" in result.output


def test_publish_writes_int64_inputs_per_step_dims_and_every_state(out, tmp_path):
    registry = tmp_path / "repo"
    result = run("publish", "--model", "tagger", "--model", "padded", "--out", out,
                 "--registry", registry, "--unsigned")
    assert result.exit_code == 0, result.output
    onnx_cfg = (registry / "tagger_onnx" / "config.pbtxt").read_text()
    assert "data_type: TYPE_INT64\n    dims: [ -1 ]" in onnx_cfg
    assert "dims: [ -1, 5 ]" in onnx_cfg
    stream_cfg = (registry / "tagger_stream_onnx" / "config.pbtxt").read_text()
    assert all(f'name: "{n}"' in stream_cfg for n in ("h_in", "c_in", "h_out", "c_out"))
    packed = (registry / "padded_onnx" / "config.pbtxt").read_text()
    assert 'name: "lengths"' in packed and "reshape: { shape: [ ] }" in packed
    assert 'name: "lengths"' in (registry / "padded_torchscript" / "config.pbtxt").read_text()
    card = (registry / "tagger_onnx" / "1" / "README.md").read_text()
    assert "Embedding (50 token ids -> 12) -> `nn.LSTM(batch_first=True)` (12 -> 16)" in card
    assert "| input | `input` | `input` | int64 | (batch, seq) | [-1] |" in card


def test_score_token_sequences_with_per_step_outputs_and_labels(out, tmp_path):
    """A Parquet column of list<int64> ids of ragged lengths: each row's per-step outputs
    (list<list<float32>>) and labels (list<int64>) equal the user's module on that row
    alone; a row with an id outside the vocabulary is rejected with its reason."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    rows = [rng.integers(0, 50, n).tolist() for n in (7, 1, 12, 7, 3)] + [[3, 99, 4]]
    pq.write_table(pa.table({"id": list(range(len(rows))),
                             "sequence": pa.array(rows, pa.list_(pa.int64()))}),
                   tmp_path / "ids.parquet")
    result = run("score", "--model", "tagger", "--out", out, "--input",
                 tmp_path / "ids.parquet", "--output", tmp_path / "y.parquet",
                 "--bad-rows", "skip")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "y.parquet")
    assert table.schema.field("output").type == pa.list_(pa.list_(pa.float32()))
    assert table.schema.field("label").type == pa.list_(pa.int64())
    theirs = chain_model("tagger")
    got = {i: (np.array(o), lab) for i, o, lab in zip(*(table.column(c).to_pylist()
                                                        for c in ("id", "output", "label")))}
    assert sorted(got) == [0, 1, 2, 3, 4]
    for i, row in enumerate(rows[:5]):
        with torch.inference_mode():
            want = theirs(torch.tensor([row]))[0].numpy()
        np.testing.assert_allclose(got[i][0], want, atol=2e-5, rtol=2e-5)
        assert got[i][1] == want.argmax(-1).tolist()
    rejects = pq.read_table(tmp_path / "y.rejects.parquet").to_pylist()
    assert rejects == [{"id": 5, "reason": "token id 99 outside the vocabulary 0..49 at step 1"}]


def test_score_a_packed_model_row_by_row(out, tmp_path):
    from pipeline.scoring.dataset import sequences_table
    import pyarrow.parquet as pq

    rng = np.random.default_rng(6)
    seqs = [rng.standard_normal((n, 6)).astype(np.float32) for n in (5, 2, 9, 5)]
    pq.write_table(sequences_table(seqs), tmp_path / "x.parquet")
    result = run("score", "--model", "padded", "--out", out, "--input",
                 tmp_path / "x.parquet", "--output", tmp_path / "y.parquet")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "y.parquet").to_pydict()
    theirs = chain_model("padded")
    for i, output in zip(table["id"], table["output"]):
        with torch.inference_mode():
            want = theirs(torch.from_numpy(seqs[i][None]), torch.tensor([len(seqs[i])]))
        np.testing.assert_allclose(output, want[0].numpy(), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", MODELS)
def test_bench_stream_steps_token_ids_and_every_state(out, name):
    """bench --stream on chains: the tagger (ids, h and c, per-step output) and the packed
    classifier (its model.onnx given lengths); the state carried over T one-step calls ends
    where the whole sequence does."""
    from pipeline.bench_stream import StreamBenchConfig
    from pipeline.bench_stream import main as bench_stream
    result = bench_stream(StreamBenchConfig(name, out, lengths=(3, 40), budget_s=0.01, min_reps=2,
                                            plot=False), log=lambda s: None)
    assert [r["T"] for r in result["rows"]] == [3, 40]
    assert all(r["stream_vs_whole_max_abs"] < 1e-5 for r in result["rows"]), result["rows"]


def test_score_token_ids_from_an_npz(out, tmp_path):
    """An .npz of int ids (rows, seq) with ragged lengths: each row's per-step outputs equal
    the user's module on its valid ids alone; a row with an id past the vocabulary is
    rejected, not scored; without `lengths` every row is full; float ids refuse the file."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(8)
    ids, lengths = rng.integers(0, 50, (4, 9)), np.array([9, 1, 5, 3])
    ids[3, 2] = 50
    np.savez(tmp_path / "ids.npz", input=ids, lengths=lengths)
    np.savez(tmp_path / "full.npz", input=ids[:2])
    np.savez(tmp_path / "float.npz", input=ids.astype(np.float32))
    result = run("score", "--model", "tagger", "--out", out, "--input", tmp_path / "ids.npz",
                 "--output", tmp_path / "y.parquet", "--bad-rows", "skip")
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "y.parquet").to_pydict()
    assert sorted(table["id"]) == [0, 1, 2]       # grouped by length: in any order
    with torch.inference_mode():
        for i, output in zip(table["id"], table["output"]):
            want = chain_model("tagger")(torch.from_numpy(ids[i:i + 1, :lengths[i]]))[0]
            np.testing.assert_allclose(np.array(output), want.numpy(), atol=2e-5, rtol=2e-5)
    assert pq.read_table(tmp_path / "y.rejects.parquet").to_pylist() == \
        [{"id": 3, "reason": "token id 50 outside the vocabulary 0..49 at step 2"}]
    result = run("score", "--model", "tagger", "--out", out, "--input", tmp_path / "full.npz",
                 "--output", tmp_path / "z.parquet")
    assert result.exit_code == 0, result.output
    assert [len(o) for o in pq.read_table(tmp_path / "z.parquet").column("output").to_pylist()] \
        == [9, 9]
    result = run("score", "--model", "tagger", "--out", out, "--input", tmp_path / "float.npz",
                 "--output", tmp_path / "w.parquet")
    assert result.exit_code != 0 and "takes integer token ids (batch, seq)" in result.output
