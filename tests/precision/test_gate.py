"""Done-when of issue 23, small: a user's 2-layer LSTM and the same network built to break
int8 go through import, export --precision fp32,bf16,int8, verify (the budget gate) and
bench (deployment.json); a seed goes through the same. The recorded figures are checked
against the user's own module run outside the pipeline."""
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.bench import BenchConfig
from pipeline.bench import main as bench
from pipeline.checkpoint import read_config
from pipeline.cli import cli
from pipeline.errors import PipelineError
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.precision.bf16 import cpu_has_bf16
from pipeline.precision.budget import DEFAULT_BUDGET
from pipeline.precision.choice import require_pair
from pipeline.precision.gate import (LONG_BATCH, LONG_STEPS, RAGGED_CALLS, Eager, check_pair,
                                     outside, ragged_calls, verification_inputs)
from pipeline.verify import SCALES, VerifyConfig, default_shapes
from pipeline.verify import main as verify

from . import models
from .conftest import LSTM_BUDGET, PRECISIONS

def pairs(report):
    return {(e["runtime"], e["precision"]): e for e in report["precisions"]}


def test_variant_files_are_listed_beside_the_fp32_ones(users):
    out, _ = users
    manifest = json.loads((out / "lstm2" / "manifest.json").read_text())
    assert {"model_int8.onnx", "model_stream_int8.onnx", "model.onnx"} <= set(manifest["files"])
    assert manifest["precisions"]["int8"]["files"] == {"model": "model_int8.onnx",
                                                       "stream": "model_stream_int8.onnx"}
    # bf16: OpenVINO IR (xml + its weights), stateless (model.onnx on the native operator)
    # and stream, both split hi/lo (precision/bf16_split.py)
    assert manifest["precisions"]["bf16"]["files"] == {
        "model": "model_bf16.xml", "model_bin": "model_bf16.bin",
        "stream": "model_stream_bf16.xml", "stream_bin": "model_stream_bf16.bin"}
    assert "runs" not in manifest["precisions"]["bf16"]
    assert {"model_bf16.xml", "model_bf16.bin", "model_stream_bf16.xml",
            "model_stream_bf16.bin"} <= set(manifest["files"])


def test_int8_within_its_budget_and_figures_hold_outside_the_project(users):
    import onnxruntime as ort
    out, reports = users
    e = pairs(reports["lstm2"])[("onnx", "int8")]
    assert e["passed"], e["reason"]
    assert e["figures"]["max_rel_std"] <= LSTM_BUDGET.max_rel_std
    # the same figure from the user's module and the int8 file, without the pipeline
    theirs = models.lstm2()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1     # as verify ran it: int8 kernels split rows by thread
    sess = ort.InferenceSession(str(out / "lstm2" / "model_int8.onnx"), options,
                                providers=["CPUExecutionProvider"])
    spec = read_config(out / "lstm2")["recipe"].model
    xs = [f["input"] for f in verification_inputs(spec, default_shapes(spec), SCALES)]
    with torch.inference_mode():
        want = np.concatenate([theirs(torch.from_numpy(x)).numpy() for x in xs]).astype(float)
    got = np.concatenate([sess.run(None, {"input": x})[0] for x in xs]).astype(float)
    assert np.abs(got - want).max() / want.std() == pytest.approx(
        e["figures"]["max_rel_std"], rel=1e-3)
    assert (got.argmax(1) == want.argmax(1)).mean() == pytest.approx(e["figures"]["label_agree"])


def test_long_stream_within_budget(users):
    _, reports = users
    s = pairs(reports["lstm2"])[("onnx", "int8")]["stream"]
    assert s["steps"] == LONG_STEPS >= 1000
    assert s["max_rel_std"] <= LSTM_BUDGET.max_rel_std and s["label_agree"] >= 0.995


def _ragged_reference(calls):
    """The user's module on each row's whole stream so far (the valid steps of every call
    up to this one, joined): a stream from zeros is the whole sequence. (calls, batch, O)."""
    theirs, seen, outs = models.lstm2(), [[] for _ in calls[0]["lengths"]], []
    for feeds in calls:
        for i, n in enumerate(feeds["lengths"]):
            seen[i].append(feeds["input"][i, :n])
        with torch.inference_mode():
            outs.append(np.concatenate([theirs(torch.from_numpy(np.concatenate(r)[None])).numpy()
                                        for r in seen]))
    return np.stack(outs).astype(float)


def test_ragged_stream_calls_within_budget_against_the_users_module(users):
    """Stream calls of several steps with rows of their own lengths (the LSTM's Scan form,
    the gather at each row's last step), states carried: recorded for every variant, and
    int8's figure is the one its stream file gives run directly against the user's own
    module on each row's joined valid steps."""
    import onnxruntime as ort
    out, reports = users
    spec = read_config(out / "lstm2")["recipe"].model
    for (runtime, precision), e in pairs(reports["lstm2"]).items():
        if precision != "fp32" and e["status"] != "unavailable":
            r = e["stream_ragged"]
            assert r["calls"] == RAGGED_CALLS and r["max_rel_std"] <= LSTM_BUDGET.max_rel_std
    recorded = pairs(reports["lstm2"])[("onnx", "int8")]["stream_ragged"]
    # the gate's own data: verify's seed 0, the long stream's draw
    x = (np.random.default_rng(1000).standard_normal((LONG_BATCH, LONG_STEPS, models.FEATURES))
         .astype(np.float32))
    calls = ragged_calls(spec, x)
    assert {int(n) for n in calls[0]["lengths"]} != {calls[0]["input"].shape[1]}   # ragged
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(out / "lstm2" / "model_stream_int8.onnx"), options,
                                providers=["CPUExecutionProvider"])
    states = {n: np.zeros((LONG_BATCH, 2, models.HIDDEN), np.float32) for n in ("h_in", "c_in")}
    got = []
    for feeds in calls:
        y, h, c = sess.run(["output", "h_out", "c_out"], {**feeds, **states})
        states = {"h_in": h, "c_in": c}
        got.append(y)
    want = _ragged_reference(calls)
    assert np.abs(np.stack(got) - want).max() / want.std() == pytest.approx(
        recorded["max_rel_std"], rel=1e-3)


def _gather_at_the_last_step(path):
    """Rewrite a stream file's per-row gather to read every row at the call's last step,
    not at its own length: the same function for one-step calls, wrong for ragged rows."""
    import onnx
    from onnx import helper
    model = onnx.load(str(path))
    g = model.graph
    nodes = [helper.make_node("Shape", ["input"], ["seq_len"], start=1, end=2),
             helper.make_node("Mul", ["lengths", "zero_len"], ["no_len"]),
             helper.make_node("Add", ["no_len", "seq_len"], ["full_len"])]
    g.initializer.append(helper.make_tensor("zero_len", onnx.TensorProto.INT64, [], [0]))
    hit = 0
    for node in g.node:
        if node.op_type == "Reshape" and node.input[0] == "lengths":
            node.input[0], hit = "full_len", hit + 1
    assert hit
    for n in reversed(nodes):
        g.node.insert(0, n)
    onnx.save(model, str(path))


def test_a_stream_file_wrong_on_ragged_rows_fails_the_gate(users, tmp_path):
    """A stream file right at one step per call and wrong on ragged rows passes the long
    stream and is refused by the ragged calls, with their figure."""
    from pipeline.runtimes import load_runner
    out, _ = users
    model_dir = tmp_path / "lstm2"
    shutil.copytree(out / "lstm2", model_dir)
    _gather_at_the_last_step(model_dir / "model_stream_int8.onnx")
    spec = read_config(model_dir)["recipe"].model
    entry = json.loads((model_dir / "manifest.json").read_text())["precisions"]["int8"]
    reference = load_runner("torch", spec, model_dir, "cpu", threads=1)
    inputs = verification_inputs(spec, [(2, 5)], (1.0,))
    row = check_pair("onnx", "int8", model_dir, entry, Eager(spec, model_dir, reference, inputs),
                     LSTM_BUDGET)
    assert row["stream"]["max_rel_std"] <= LSTM_BUDGET.max_rel_std        # one step: right
    assert row["status"] == "failed" and row["stream_ragged"]["max_rel_std"] > 0.1
    assert "ragged rows" in row["reason"]


def test_ragged_calls_are_judged_by_their_max_error_alone():
    """24 answers: one label flip is 4%, so the ragged calls' label rate is not judged (the
    data and the long stream judge labels); their max error is."""
    fine = {"max_rel_std": 0.001, "label_agree": 1.0}
    row = {"figures": fine, "stream": fine,
           "stream_ragged": {"max_rel_std": 0.001, "label_agree": 23 / 24}}
    assert outside(row, DEFAULT_BUDGET) == []
    row["stream_ragged"]["max_rel_std"] = 0.02
    assert outside(row, DEFAULT_BUDGET) == [
        "max error 2% of std > 1% on 40-step stream calls of ragged rows"]
    row["stream"] = {"max_rel_std": 0.001, "label_agree": 0.99}
    assert "labels agree 99% < 99.5% after 1200 stream steps" in outside(row, DEFAULT_BUDGET)


def openvino_bf16(path):
    """A file compiled by OpenVINO itself with the bf16 hint, one thread (as verify ran
    it), not through the pipeline; asserts OpenVINO really compiled it in bf16."""
    import openvino as ov
    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    request = compiled.create_infer_request()
    return lambda feeds: request.infer(feeds)[compiled.outputs[0]].copy()


def test_bf16_file_is_the_users_function_on_its_native_operator(users):
    """model_bf16.xml (any CPU): no If left, the LSTM operator at every batch, and in f32
    (OpenVINO with the f32 hint) the user's module's function on both sides of model.onnx's
    batch limit, where model.onnx itself switches to its Scan: the hi/lo split computes
    the same function."""
    import openvino as ov
    out, _ = users
    model = ov.Core().read_model(str(out / "lstm2" / "model_bf16.xml"))
    types = [op.get_type_name() for op in model.get_ordered_ops()]
    assert "If" not in types and types.count("LSTMSequence") == 2      # one per layer
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    theirs = models.lstm2()
    for batch in (1, 300):        # 300 x H > the LSTM's native limit (4096 elements)
        x = np.random.default_rng(batch).standard_normal((batch, 40, models.FEATURES))
        x = (x * 10).astype(np.float32)      # large inputs: x_lo carries real digits
        with torch.inference_mode():
            want = theirs(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(compiled(x)[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 units (AVX512_BF16/AMX)")
def test_bf16_within_its_budget_and_figures_hold_outside_the_project(users):
    """On a bf16 CPU: openvino:bf16 really computed in bf16 (its error is far above f32's,
    ~3e-7 of std), passed, and its recorded figure is the one OpenVINO gives when run
    directly against the user's own module."""
    out, reports = users
    e = pairs(reports["lstm2"])[("openvino", "bf16")]
    assert e["passed"], e["reason"]
    assert e["arithmetic"] == "bfloat16" and e["artifact"] == "model_bf16.xml"
    # within the issue's default budget (1% of std), not only the tests' looser one
    assert 1e-4 < e["figures"]["max_rel_std"] <= DEFAULT_BUDGET.max_rel_std
    assert e["stream"]["steps"] == LONG_STEPS
    assert e["stream_artifact"] == "model_stream_bf16.xml"
    assert e["stream"]["max_rel_std"] <= DEFAULT_BUDGET.max_rel_std
    assert e["stream"]["label_agree"] >= DEFAULT_BUDGET.label_agree
    f32 = pairs(reports["lstm2"])[("openvino", "fp32")]
    assert f32["figures"]["max_rel_std"] < e["figures"]["max_rel_std"] / 100
    run = openvino_bf16(out / "lstm2" / "model_bf16.xml")
    spec = read_config(out / "lstm2")["recipe"].model
    xs = [f["input"] for f in verification_inputs(spec, default_shapes(spec), SCALES)]
    with torch.inference_mode():
        theirs = models.lstm2()
        want = np.concatenate([theirs(torch.from_numpy(x)).numpy() for x in xs]).astype(float)
    got = np.concatenate([run({"input": x}) for x in xs]).astype(float)
    assert np.abs(got - want).max() / want.std() == pytest.approx(
        e["figures"]["max_rel_std"], rel=1e-3)
    assert (got.argmax(1) == want.argmax(1)).mean() == pytest.approx(e["figures"]["label_agree"])


@pytest.mark.skipif(cpu_has_bf16(), reason="this CPU runs bf16: measured above")
def test_bf16_is_unavailable_without_bf16_units(users):
    _, reports = users
    e = pairs(reports["lstm2"])[("openvino", "bf16")]
    assert e["status"] == "unavailable" and "no bf16" in e["reason"] and not e["passed"]
    with pytest.raises(PipelineError, match=r"refused: openvino:bf16 -- unavailable: this "
                                            "CPU has no bf16 units"):
        require_pair(reports["lstm2"], "openvino", "bf16")


def test_a_model_built_to_break_int8_fails_and_is_never_deployed(users):
    out, reports = users
    report = reports["broken_lstm"]
    assert report["passed"]                       # float32: the same function, verified
    e = pairs(report)[("onnx", "int8")]
    assert not e["passed"] and e["figures"]["max_rel_std"] > 0.1
    assert "max error" in e["reason"]
    with pytest.raises(PipelineError, match=r"refused: onnx:int8, max error") as exc:
        require_pair(report, "onnx", "int8")
    assert "\n" not in str(exc.value)
    result = bench(BenchConfig("broken_lstm", out, shapes=((1, 5), (16, 10)), budget_s=0.2,
                               min_reps=3, max_reps=50, warmup=1, plot=False,
                               runtimes=("onnx",)), log=lambda s: None)
    dep = json.loads((out / "broken_lstm" / "deployment.json").read_text())
    assert dep == result["deployment"]
    assert set(dep["shapes"]) == {"stream step 1x1", "1x5", "16x10"}
    for c in dep["shapes"].values():
        assert c["precision"] == "fp32" and c["runtime"] in ("onnx", "torchscript")
        assert all(not r["pair"].endswith(":int8") for r in c["candidates"])
    assert any("onnx:int8" in r for r in dep["refused"])


def test_deployment_names_the_fastest_verified_pair(users):
    out, reports = users
    bench(BenchConfig("lstm2", out, shapes=((1, 5),), budget_s=0.2, min_reps=3, max_reps=50,
                      warmup=1, plot=False, runtimes=("onnx", "openvino")), log=lambda s: None)
    dep = json.loads((out / "lstm2" / "deployment.json").read_text())
    verified = {f"{r}:{p}" for (r, p), e in pairs(reports["lstm2"]).items() if e["passed"]}
    for shape, c in dep["shapes"].items():
        names = [r["pair"] for r in c["candidates"]]
        assert "onnx:int8" in names and set(names) <= verified
        # only the runtimes bench was asked for, the stream step too (torchscript is verified)
        assert {n.split(":")[0] for n in names} <= {"onnx", "openvino"}, (shape, names)
        assert f"{c['runtime']}:{c['precision']}" == names[0]     # the fastest
        assert c["eager_p50_us"] > 0 and c["errors"]["figures"]["max_rel_std"] >= 0
    # openvino:fp32 (verified, timed at the stream step) is chosen only where Triton's
    # openvino backend can serve it in f32: a CPU without bf16 units
    named = {r["pair"] for c in dep["shapes"].values() for r in c["candidates"]}
    if cpu_has_bf16():
        assert "openvino:fp32" in dep["not_deployable"] and "openvino:fp32" not in named
    else:
        assert dep["not_deployable"] == {} and "openvino:fp32" in named


def test_openvino_fp32_is_deployable_only_without_bf16_units(monkeypatch):
    """The rule for both kinds of CPU, whichever this one is."""
    from pipeline.precision import bf16
    from pipeline.precision.choice import undeployable
    monkeypatch.setattr(bf16, "cpu_has_bf16", lambda: True)
    assert "cannot keep it in f32" in undeployable("openvino", "fp32")
    assert undeployable("openvino", "bf16") is None and undeployable("onnx", "fp32") is None
    monkeypatch.setattr(bf16, "cpu_has_bf16", lambda: False)
    assert undeployable("openvino", "fp32") is None


def test_unverified_pair_is_one_line(users):
    _, reports = users
    with pytest.raises(PipelineError, match="onnx:fp16 was not verified") as exc:
        require_pair(reports["lstm2"], "onnx", "fp16")
    assert "\n" not in str(exc.value)
    assert "export it with --precision fp16 and run verify" in str(exc.value)
    # what to do next, per kind of pair: bf16 has no form for ONNX Runtime at all
    with pytest.raises(PipelineError, match="onnx:bf16 was not verified .*; bf16 runs on "
                                            "openvino only$"):
        require_pair(reports["lstm2"], "onnx", "bf16")
    with pytest.raises(PipelineError, match="tract:fp32 was not verified .*; run verify "
                                            "--runtime tract$"):
        require_pair(reports["lstm2"], "tract", "fp32")


def test_an_fp32_runtime_verified_without_budget_figures_is_usable(users):
    """A report whose fp32 runtime is listed under `runtimes` only (no `precisions` entry for
    it) still lets that pair through when verify passed (it raised KeyError before)."""
    _, reports = users
    report = json.loads(json.dumps(reports["lstm2"]))
    report["precisions"] = [e for e in report["precisions"] if e["runtime"] != "onnx"
                            or e["precision"] != "fp32"]
    assert any(r["name"] == "onnx" for r in report["runtimes"]) and report["passed"]
    assert require_pair(report, "onnx", "fp32")["passed"]
    # a chain exported without variants has no `precisions` at all: the refusal of another
    # pair still names the fp32 runtimes verify passed, not "none"
    report["precisions"] = []
    with pytest.raises(PipelineError, match=r"\(verified pairs: torchscript:fp32, onnx:fp32, "
                                            r"openvino:fp32\); export it"):
        require_pair(report, "onnx", "int8")


def _trained_forecaster(trained, out):
    """The trained seed's weights and config alone, in `out`: what export starts from."""
    src = trained["out"] / "forecaster"
    shutil.copytree(src, out / "forecaster", ignore=shutil.ignore_patterns("*.onnx", "*.pt",
                                                                          "*.json"),
                    dirs_exist_ok=True)
    shutil.copy(src / "config.json", out / "forecaster" / "config.json")


def test_seed_variants_are_gated(trained, tmp_path):
    """The forecaster seed: its int8 figures measured and the verdict the budget's."""
    _trained_forecaster(trained, tmp_path)
    export(ExportConfig("forecaster", tmp_path, precisions=PRECISIONS), log=lambda s: None)
    report = verify(VerifyConfig("forecaster", tmp_path, "cpu", shapes=((1, 1), (3, 9))),
                    log=lambda s: None)
    e = pairs(report)[("onnx", "int8")]
    f = e["figures"]
    assert f["max_rel_std"] > 0 and e["stream"] is None       # RNN stream: no int8 file
    assert e["passed"] == (f["max_rel_std"] <= 0.01)


def test_a_variant_file_that_cannot_be_written_stops_export(trained, tmp_path, monkeypatch):
    """files() promised model_int8.onnx and the rewrite failed: one line naming the file,
    and nothing of the export lands (no manifest listing a file that is not there)."""
    import pipeline.precision.int8 as int8

    def refuse(model, weights=None, inputs=False):
        raise ValueError("nothing to quantize")
    _trained_forecaster(trained, tmp_path)
    monkeypatch.setattr(int8, "quantize", refuse)
    r = CliRunner().invoke(cli, ["export", "--model", "forecaster", "--out", str(tmp_path),
                                 "--precision", "fp32,int8"])
    assert r.exit_code == 1, r.output
    assert "model_int8.onnx: no int8 form: nothing to quantize" in r.output
    assert "Traceback" not in r.output
    left = sorted(p.name for p in (tmp_path / "forecaster").iterdir())
    assert not [n for n in left if n.endswith((".onnx", ".pt")) or n == "manifest.json"], left


def test_an_export_without_a_precision_removes_its_earlier_files(trained, tmp_path):
    """export --precision fp32,int8,fp16, then export (fp32): the variants' files go with
    the old manifest, so the folder holds what its manifest lists (and the weights)."""
    _trained_forecaster(trained, tmp_path)
    folder = tmp_path / "forecaster"
    export(ExportConfig("forecaster", tmp_path, precisions=("fp32", "int8", "fp16")),
           log=lambda s: None)
    assert {"model_int8.onnx", "model_fp16.onnx"} <= {p.name for p in folder.iterdir()}
    manifest = export(ExportConfig("forecaster", tmp_path), log=lambda s: None)
    on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.name != ".lock"}
    assert on_disk == {*manifest["files"], "manifest.json"}, on_disk
    assert "precisions" not in manifest


def test_cli_refuses_bad_precision_and_budget(users):
    out, _ = users
    r = CliRunner().invoke(cli, ["export", "--model", "lstm2", "--out", str(out),
                                 "--precision", "fp32,int4"])
    assert r.exit_code == 1 and "unknown precision 'int4'" in r.output
    r = CliRunner().invoke(cli, ["verify", "--model", "lstm2", "--out", str(out),
                                 "--budget", "max=lots"])
    assert r.exit_code == 1 and "--budget max='lots'" in r.output


def test_verify_prints_the_budget_when_an_fp32_check_fails(users, monkeypatch):
    """A failed fp32 check still records the variants' figures; verify prints them before
    its error line (a model that fails tract's tolerance and int8's budget shows both)."""
    import pipeline.verify
    from pipeline.errors import VerificationError
    out, reports = users

    def failing(config, log=print):
        raise VerificationError("broken_lstm: 1 of 2 checks failed; first: tract", {
            **reports["broken_lstm"], "rows": [], "passed": False})

    monkeypatch.setattr(pipeline.verify, "main", failing)
    r = CliRunner().invoke(cli, ["verify", "--model", "broken_lstm", "--out", str(out)])
    assert r.exit_code == 1
    lines = r.output.splitlines()
    budget = next(i for i, line in enumerate(lines) if "precision budget" in line)
    assert "onnx:int8, max error" in lines[budget + 2] and "-- failed" in lines[budget + 2]
    assert lines[-1].startswith("Error: broken_lstm: 1 of 2 checks failed")


def test_verify_measures_the_budget_on_the_users_data(users, tmp_path):
    from pipeline.scoring.bench import write_dataset
    out, _ = users
    shutil.copytree(out / "lstm2", tmp_path / "lstm2", ignore=shutil.ignore_patterns(".lock"))
    data = write_dataset(tmp_path / "mine.parquet", 60, models.FEATURES)
    report = verify(VerifyConfig("lstm2", tmp_path, "cpu", shapes=((1, 1),), data=data,
                                 budget=LSTM_BUDGET), log=lambda s: None)
    assert report["budget_data"] == str(data)
    e = pairs(report)[("onnx", "int8")]
    assert e["figures"]["rows"] == 60 and e["passed"] == (
        e["figures"]["max_rel_std"] <= LSTM_BUDGET.max_rel_std and e["stream"]["max_rel_std"]
        <= LSTM_BUDGET.max_rel_std)
