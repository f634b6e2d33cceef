"""bench runs on a tiny setting and writes its files; no assertion is ever about a time."""
import json

import pytest
from click.testing import CliRunner

from pipeline.bench import BENCHMARK_JSON, BENCHMARK_PNG, BenchConfig, main, table
from pipeline.cli import cli
from pipeline.specs import MODEL_NAMES

TINY = dict(shapes=((2, 3),), budget_s=0.0, min_reps=3, warmup=1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bench_writes_json_and_png(exported, name):
    result = main(BenchConfig(name, exported["out"], **TINY), log=lambda s: None)
    model_dir = exported["out"] / name
    saved = json.loads((model_dir / BENCHMARK_JSON).read_text())
    assert saved == json.loads(json.dumps(result))
    assert {"model", "settings", "machine", "versions", "rows", "flops"} <= set(saved)
    assert saved["settings"]["torch_threads"] == 1
    assert saved["settings"]["onnxruntime_intra_op_threads"] == 1
    assert {r["runtime"] for r in saved["rows"]} == {"torch", "torchscript", "onnx"}
    for row in saved["rows"]:
        assert (row["batch"], row["seq"]) == (2, 3) and row["reps"] >= 3
        assert {"p50_us", "p90_us", "throughput_seq_per_s", "speedup_vs_eager"} <= set(row)
    assert (model_dir / BENCHMARK_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs eager" in table(result)


def test_bench_cli(exported):
    result = CliRunner().invoke(cli, ["bench", "--model", "classifier", "--out",
                                      str(exported["out"]), "--shapes", "1x2", "--budget", "0",
                                      "--min-reps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output and "benchmark.json" in result.output


def test_bench_without_artifacts_is_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--model", "classifier", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json" in result.output
    assert "Traceback" not in result.output


def test_bench_stream_writes_json_and_png(exported):
    from pipeline.bench_stream import STREAM_JSON, STREAM_PNG
    result = CliRunner().invoke(cli, ["bench", "--stream", "--model", "forecaster", "--out",
                                      str(exported["out"]), "--budget", "0", "--min-reps", "2"])
    assert result.exit_code == 0, result.output
    assert "recompute prefix" in result.output and "ORT call floor" in result.output
    model_dir = exported["out"] / "forecaster"
    saved = json.loads((model_dir / STREAM_JSON).read_text())
    assert [r["T"] for r in saved["rows"]] == [50, 500, 5000]
    for row in saved["rows"]:
        assert row["stream_step"]["reps"] >= row["T"]          # every step of a stream timed
        assert {"p50_us", "p90_us", "mean_us"} <= set(row["recompute_prefix"])
        # the state carried over T one-step calls still gives model.onnx's answer
        assert row["stream_vs_whole_max_abs"] <= 1e-4
    assert {"step_over_floor", "flatness", "step_within_2x_floor"} <= set(saved["goals"])
    assert (model_dir / STREAM_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
