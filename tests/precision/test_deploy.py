"""Deploying the choice: publish --deploy (a signed Triton model on the backend that runs the
pair), score --precision, and the one-line refusals for a pair outside its budget."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import PublishError
from pipeline.precision.bf16 import cpu_has_bf16
from pipeline.precision.budget import parse_budget
from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish
from pipeline.publishing.signing import keygen
from pipeline.publishing.trust import open_published
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify

from tests.test_cli import one_line_error

from .conftest import LSTM_BUDGET, write_choice


def test_publish_deploy_int8_is_a_signed_onnxruntime_model(users, tmp_path):
    out, reports = users
    key = keygen(tmp_path / "keys")
    r = publish(PublishConfig("lstm2", out, tmp_path / "repo", signing_key=key["private"],
                              deploy="onnx:int8"), log=lambda s: None)
    folder = r["folders"]["onnx_int8"]
    assert folder == tmp_path / "repo" / "lstm2_onnx_int8" / "1"
    assert set(r["folders"]) >= {"onnx", "torchscript", "stream_onnx_int8"}
    assert (folder / "model.onnx").read_bytes() == (out / "lstm2" / "model_int8.onnx").read_bytes()
    config = (folder.parent / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    card = (folder / "README.md").read_text()
    assert "`int8` on `onnx`" in card and "max error" in card
    # signed: every file of the folder is covered, and it loads as the int8 pair
    runner = open_published(folder, key["public"], threads=1)
    assert runner.precision == "int8" and runner.name == "onnx:int8"   # what score prints
    x = np.random.default_rng(0).standard_normal((3, 9, 8)).astype(np.float32)
    runner.run({"input": x})
    stream = json.loads((r["folders"]["stream_onnx_int8"] / "manifest.json").read_text())
    assert stream["runtime"] == "stream_onnx_int8" and "model.sig" in {
        p.name for p in r["folders"]["stream_onnx_int8"].iterdir()}


def test_publish_deploy_bf16_config_carries_the_precision_hint():
    from pipeline.publishing.triton import config_pbtxt, parse_config
    from pipeline.specs import SPECS
    for key in ("openvino_bf16", "stream_openvino_bf16"):
        text = config_pbtxt(SPECS["classifier"], key)
        assert 'backend: "openvino"' in text and "platform" not in text.split("name:")[1]
        # the openvino backend's own key (openvino_backend src/openvino.cc ParseParameters)
        assert 'key: "HINT_BF16" value: { string_value: "YES" }' in text
        parse_config(text)       # a valid Triton ModelConfig (where tritonclient is installed)
        assert "HINT_BF16" not in config_pbtxt(SPECS["classifier"], key.removesuffix("_bf16"))


def test_publish_deploy_refuses_a_pair_outside_its_budget(users, tmp_path):
    out, _ = users
    with pytest.raises(PublishError, match=r"refused: onnx:int8, max error .* of std") as exc:
        publish(PublishConfig("broken_lstm", out, tmp_path / "repo", unsigned=True,
                              deploy="onnx:int8"), log=lambda s: None)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "repo" / "broken_lstm_onnx").exists()    # nothing published


def test_publish_deploy_refuses_bf16_outside_its_budget_or_unavailable(users, tmp_path):
    """openvino:bf16 refused with its figures: on a bf16 CPU, verified under a budget far
    tighter than bf16's rounding (max error 0.01% of std; f32 is ~3e-5%); on a CPU without
    bf16 units, as unavailable, whatever the budget."""
    out, _ = users
    shutil.copytree(out / "lstm2", tmp_path / "lstm2", ignore=shutil.ignore_patterns(".lock"))
    report = verify(VerifyConfig("lstm2", tmp_path, "cpu", shapes=((1, 1), (5, 21)),
                                 runtimes=("onnx", "torchscript"),
                                 budget=parse_budget("max=0.01%")), log=lambda s: None)
    e = next(e for e in report["precisions"] if e["precision"] == "bf16")
    if cpu_has_bf16():
        assert e["status"] == "failed" and e["figures"]["max_rel_std"] > 1e-4
        want = r"lstm2: refused: openvino:bf16, max error \S+% of std .* -- failed: max error"
    else:
        assert e["status"] == "unavailable"
        want = r"lstm2: refused: openvino:bf16 -- unavailable: this CPU has no bf16 units"
    with pytest.raises(PublishError, match=want) as exc:
        publish(PublishConfig("lstm2", tmp_path, tmp_path / "repo", unsigned=True,
                              deploy="openvino:bf16"), log=lambda s: None)
    assert "\n" not in str(exc.value)
    assert not list((tmp_path / "repo").glob("lstm2*"))          # nothing published


def test_publish_deploy_best_reads_the_choice(users, tmp_path):
    out, _ = users
    write_choice(out / "lstm2", {"1x50": {"runtime": "onnx", "precision": "int8"},
                                 "stream step 1x1": {"runtime": "onnx", "precision": "fp32"}})
    r = publish(PublishConfig("lstm2", out, tmp_path / "repo", unsigned=True, deploy="best"),
                log=lambda s: None)
    assert "onnx_int8" in r["folders"]


def test_deploy_best_refuses_a_choice_made_for_another_build(users, tmp_path):
    """Export again (other files), verify again: the deployment.json bench wrote before was
    timed on the old files, so publish --deploy best refuses it in one line, and bench
    writes no choice from a verification.json that judged other files."""
    from pipeline.bench import BenchConfig
    from pipeline.bench import main as bench
    from pipeline.manifest import write_manifest
    out, _ = users
    model_dir = tmp_path / "out" / "lstm2"
    shutil.copytree(out / "lstm2", model_dir)
    write_choice(model_dir, {"1x50": {"runtime": "onnx", "precision": "int8"}})
    import onnx
    proto = onnx.load(str(model_dir / "model.onnx"))      # another build: other bytes
    proto.doc_string = "exported again"
    onnx.save(proto, str(model_dir / "model.onnx"))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    write_manifest(model_dir, list(manifest.pop("files")), **manifest)
    said = []
    bench(BenchConfig("lstm2", tmp_path / "out", shapes=((1, 5),), budget_s=0.05, min_reps=2,
                      max_reps=5, warmup=1, plot=False, runtimes=("onnx",)), log=said.append)
    assert any("verification.json judged other files than those on disk; no deployment.json "
               "until verify runs again" in s for s in said)
    verify(VerifyConfig("lstm2", tmp_path / "out", "cpu", shapes=((1, 1),),
                        runtimes=("onnx", "torchscript"), budget=LSTM_BUDGET),
           log=lambda s: None)
    with pytest.raises(PublishError, match=r"deployment.json: chosen for other files than "
                                           r"those on disk .*; run .*bench --model lstm2` again$"):
        publish(PublishConfig("lstm2", tmp_path / "out", tmp_path / "repo", unsigned=True,
                              deploy="best"), log=lambda s: None)
    assert not (tmp_path / "repo").exists() or not list((tmp_path / "repo").glob("lstm2*/1"))
    bench(BenchConfig("lstm2", tmp_path / "out", shapes=((1, 5),), budget_s=0.05, min_reps=2,
                      max_reps=5, warmup=1, plot=False, runtimes=("onnx",)), log=lambda s: None)
    r = publish(PublishConfig("lstm2", tmp_path / "out", tmp_path / "repo", unsigned=True,
                              deploy="best"), log=lambda s: None)
    assert r["version"] == 1


def test_score_with_a_verified_variant_and_refusal(users, tmp_path):
    from pipeline.scoring.bench import write_dataset
    out, _ = users
    data = write_dataset(tmp_path / "seqs.parquet", 50, 8)
    r = CliRunner().invoke(cli, ["score", "--model", "lstm2", "--out", str(out), "--input",
                                 str(data), "--output", str(tmp_path / "y.parquet"),
                                 "--precision", "int8", "--quiet"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["score", "--model", "broken_lstm", "--out", str(out),
                                 "--input", str(data), "--output", str(tmp_path / "z.parquet"),
                                 "--precision", "int8", "--quiet"])
    assert r.exit_code == 1 and "refused: onnx:int8, max error" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "z.parquet").exists()


def test_kserve_manifest_carries_each_models_precision(users, tmp_path):
    from pipeline.publishing.kserve import write_manifest
    out, _ = users
    key = keygen(tmp_path / "keys")
    publish(PublishConfig("lstm2", out, tmp_path / "repo", signing_key=key["private"],
                          deploy="onnx:int8"), log=lambda s: None)
    docs = write_manifest(tmp_path / "repo", key["public"], tmp_path / "isvc.yaml",
                          name="lstm2", storage_uri="pvc://models/repo", cpu="2",
                          memory="2Gi")
    notes = docs[1]["metadata"]["annotations"]
    assert notes["rnn-pipeline.io/precision.lstm2_onnx_int8"].startswith("onnx:int8, max error")
    assert "fp32" in notes["rnn-pipeline.io/precision.lstm2_onnx"]


def test_deploy_after_a_plain_release_publishes_a_new_version(users, tmp_path):
    """publish, then bench's choice deployed later (the usual order): version 1's release
    never changes, so the same build with the variant is version 2, whole; a --version that
    names the released one is one line and writes nothing."""
    from pipeline.publishing.release import release_tar, tarball_path
    out, _ = users
    repo = tmp_path / "repo"
    first = publish(PublishConfig("lstm2", out, repo, unsigned=True), log=lambda s: None)
    assert first["version"] == 1 and "onnx_int8" not in first["folders"]
    released = tarball_path(repo, "lstm2", 1).read_bytes()
    with pytest.raises(PublishError, match=r"lstm2 version 1 is released without lstm2_onnx_int8, "
                                           r"lstm2_stream_onnx_int8; releases are immutable .* "
                                           r"as 2\)$"):
        publish(PublishConfig("lstm2", out, repo, version=1, unsigned=True, deploy="onnx:int8"),
                log=lambda s: None)
    assert not (repo / "lstm2_onnx_int8").exists()
    said = []
    second = publish(PublishConfig("lstm2", out, repo, unsigned=True, deploy="onnx:int8"),
                     log=said.append)
    assert second["version"] == 2 and second["published"]
    assert {p.name for p in (repo / "lstm2_onnx_int8").iterdir() if p.is_dir()} == {"2"}
    assert (repo / "lstm2_onnx" / "2").is_dir() and (repo / "lstm2_torchscript" / "2").is_dir()
    assert tarball_path(repo, "lstm2", 1).read_bytes() == released       # untouched
    assert tarball_path(repo, "lstm2", 2).read_bytes() == release_tar(repo, "lstm2", 2)
    assert any("released without lstm2_onnx_int8, lstm2_stream_onnx_int8; published whole "
               "as version 2" in s for s in said)
    # the same again: nothing new
    again = publish(PublishConfig("lstm2", out, repo, unsigned=True, deploy="onnx:int8"),
                    log=lambda s: None)
    assert again["version"] == 2 and not again["published"]


def test_loadtest_checks_a_served_int8_answer_against_its_budget(users):
    """Triton's dynamic batcher puts an int8 request in a batch with others, and ORT
    quantizes a call's activations with one scale: the answer moves with its neighbours,
    far beyond the fp32 tolerance but within the budget. loadtest's check for a variant is
    the budget (twice it: two answers each within it of eager), fp32's stays the tolerance."""
    import onnxruntime as ort

    from pipeline.serving.published import answer_tolerance
    out, reports = users
    report = reports["lstm2"]
    assert answer_tolerance(report, "onnx") == (report["tolerance"]["atol"],
                                                report["tolerance"]["rtol"], False)
    atol, rtol, variant = answer_tolerance(report, "stream_onnx_int8")
    e = next(e for e in report["precisions"] if e["precision"] == "int8")
    assert (atol, rtol, variant) == (2 * e["budget"]["max_rel_std"] * e["figures"]["std"],
                                     0.0, True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(out / "lstm2" / "model_int8.onnx"), options,
                                providers=["CPUExecutionProvider"])
    x = np.random.default_rng(4).standard_normal((8, 30, 8)).astype(np.float32)
    batched = sess.run(None, {"input": x})[0]
    alone = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(8)])
    moved = np.abs(batched - alone).max()
    assert report["tolerance"]["atol"] < moved <= atol, (moved, atol)


def test_loadtest_stream_check_of_a_variant_still_catches_a_lost_state(users, tmp_path):
    """A variant stream's carried states are not compared (the budget bounds outputs), yet
    a state lost mid-stream is caught: the next steps' outputs leave the budget. Answers
    made here as a client would get them, through the published int8 stream file."""
    from pipeline.serving.loadstream import check_streams
    from pipeline.serving.published import open_published as served_model
    out, _ = users
    publish(PublishConfig("lstm2", out, tmp_path / "repo", unsigned=True, deploy="onnx:int8"),
            log=lambda s: None)
    model = served_model(tmp_path / "repo", "lstm2_stream_onnx_int8")
    assert model.variant
    run, rng = model.runner(), np.random.default_rng(9)
    data, lengths = model.inputs[0], model.inputs[1]
    xs = model.sample_steps(rng, 2, 40)                          # (steps, batch, 1, F)

    def answers(lose_at=None):
        state = {i.name: np.zeros((2, *i.dims), np.float32) for i, _ in model.state_pairs()}
        got = []
        for t in range(len(xs)):
            if t == lose_at:                                     # the server forgot it
                state = {k: np.zeros_like(v) for k, v in state.items()}
            y = run({data.name: xs[t], lengths.name: np.ones(2, np.int64), **state})
            got.append(y)
            state = {i.name: y[o.name] for i, o in model.state_pairs()}
        return got
    assert check_streams(model, [(xs, answers())]) == 0
    assert check_streams(model, [(xs, answers(lose_at=20))]) > 0


def test_predict_runs_a_verified_variant(users, tmp_path):
    """predict --precision: the int8 files' own answers (run here on ONNX Runtime directly),
    stateless and stream; a failed pair, a pair with no stream file and a version folder
    beside --precision are one line."""
    import onnxruntime as ort
    out, _ = users
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    feeds = {"input": rng.standard_normal((2, 6, 8)).astype(np.float32),
             "lengths": np.array([6, 2]), "h_in": np.zeros((2, 2, 32), np.float32),
             "c_in": np.zeros((2, 2, 32), np.float32)}
    np.savez(tmp_path / "s.npz", **feeds)

    def session(name):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(out / "lstm2" / name), options,
                                    providers=["CPUExecutionProvider"])

    base = ["predict", "--model", "lstm2", "--out", str(out), "--precision", "int8"]
    r = CliRunner().invoke(cli, [*base, "--input", str(tmp_path / "x.npy"),
                                 "--output", str(tmp_path / "y.npy")])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  session("model_int8.onnx").run(None, {"input": x})[0])
    r = CliRunner().invoke(cli, [*base, "--input", str(tmp_path / "s.npz"), "--stream",
                                 "--output", str(tmp_path / "next.npz")])
    assert r.exit_code == 0, r.output
    want = session("model_stream_int8.onnx").run(["output", "h_out", "c_out"], feeds)
    got = np.load(tmp_path / "next.npz")
    for name, w in zip(("output", "h_out", "c_out"), want):
        np.testing.assert_array_equal(got[name], w)
    for args, said in (
            (["--model", "broken_lstm", "--precision", "int8"], "refused: onnx:int8, max error"),
            (["--model", "lstm2", "--precision", "bf16"], "bf16 runs on openvino only"),
            (["--version-dir", str(tmp_path), "--public-key", str(tmp_path / "x.npy"),
              "--precision", "int8"], "--precision with --version-dir")):
        r = CliRunner().invoke(cli, ["predict", "--out", str(out), *args,
                                     "--input", str(tmp_path / "x.npy")])
        one_line_error(r, said)
