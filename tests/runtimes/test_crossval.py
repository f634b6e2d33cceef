"""pipeline.crossval renders the cross-runtime table from verification.json and benchmark.json."""
import json
import shutil

import pytest

from pipeline.bench import BenchConfig
from pipeline.bench import main as bench
from pipeline.crossval import BEGIN, END, render, update_readme
from pipeline.errors import PipelineError
from pipeline.specs import MODEL_NAMES
from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify


def test_table_comes_from_the_reports(exported, tmp_path):
    for name in MODEL_NAMES:
        shutil.copytree(exported["out"] / name, tmp_path / name)
        verify(VerifyConfig(name, tmp_path, "cpu", ((1, 3), (2, 5)), runtimes=("all",)),
               log=lambda s: None)
        bench(BenchConfig(name, tmp_path, ((2, 3),), budget_s=0.0, min_reps=2, warmup=1,
                          plot=False, runtimes=("all",)), log=lambda s: None)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\ntail\n")
    update_readme(readme, render(tmp_path))
    text = readme.read_text()
    assert "old" not in text and text.endswith(f"{END}\ntail\n")
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| TorchScript (torch.jit)", "| ONNX Runtime", "| OpenVINO (CPU)", "| tract",
        "| ONNX reference evaluator"]
    report = json.loads((tmp_path / "classifier" / "verification.json").read_text())
    tract = next(e for e in report["runtimes"] if e["name"] == "tract")
    tract_row = next(r for r in rows if r.startswith("| tract"))
    assert f"{tract['worst_max_abs']:.1e}" in tract_row and tract["version"] in tract_row
    fastest = [r for name in MODEL_NAMES for r in json.loads(
        (tmp_path / name / "benchmark.json").read_text())["rows"]
        if r["fastest"] and r["runtime"] != "torch"]          # eager has no row in the table
    assert sum(r.count(" *") for r in rows) == len(fastest)


def test_without_reports_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match="make crossval"):
        render(tmp_path)
