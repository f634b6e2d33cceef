"""The budget: parsing --budget, the figures against a hand computation, the verdict."""
import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.precision import parse_pair, parse_precisions
from pipeline.precision.budget import DEFAULT_BUDGET, Budget, describe, figures, judge, \
    parse_budget


def test_default_budget_is_the_issues():
    assert parse_budget(None) == DEFAULT_BUDGET == Budget(0.995, 0.01)


@pytest.mark.parametrize("text,want", [("labels=99%,max=2%", Budget(0.99, 0.02)),
                                       ("max=0.5%", Budget(0.995, 0.005)),
                                       ("labels=0.9", Budget(0.9, 0.01))])
def test_parse_budget(text, want):
    assert parse_budget(text) == want


@pytest.mark.parametrize("text", ["max", "speed=1%", "max=abc", "labels=150%", "max=-1%"])
def test_bad_budget_is_one_line(text):
    with pytest.raises(PipelineError, match="--budget") as exc:
        parse_budget(text)
    assert "\n" not in str(exc.value)


def test_precisions_and_pairs():
    assert parse_precisions("int8, bf16") == ("fp32", "int8", "bf16")
    assert parse_precisions("fp32") == ("fp32",)
    with pytest.raises(PipelineError, match="unknown precision 'int4'"):
        parse_precisions("fp32,int4")
    assert parse_pair("openvino:bf16") == ("openvino", "bf16")
    assert parse_pair("onnx") == ("onnx", "fp32")


def test_figures_against_a_hand_computation():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((1000, 3))
    a = e.copy()
    a[8, (e[8].argmax() + 1) % 3] = 100.0      # and one label flipped
    f = figures([a[:400], a[400:]], [e[:400], e[400:]], classification=True)
    err = np.abs(a - e)
    assert f["std"] == pytest.approx(e.std())
    assert f["max_rel_std"] == pytest.approx(err.max() / e.std())
    assert f["p999_rel_std"] == pytest.approx(np.quantile(err, 0.999) / e.std())
    want_agree = (a.argmax(1) == e.argmax(1)).mean()
    assert f["label_agree"] == pytest.approx(want_agree) and want_agree < 1
    assert figures([a], [e], classification=False)["label_agree"] is None


def test_non_finite_outputs_fail():
    e = np.ones((4, 2))
    f = figures([np.full((4, 2), np.nan)], [e], True)
    assert judge(f, DEFAULT_BUDGET)


def test_judge_names_each_excess():
    f = {"max_rel_std": 0.02, "p999_rel_std": 0.01, "label_agree": 0.99}
    reasons = judge(f, DEFAULT_BUDGET, "after 1200 stream steps")
    assert reasons == ["max error 2% of std > 1% after 1200 stream steps",
                       "labels agree 99% < 99.5% after 1200 stream steps"]
    assert judge(f, Budget(0.99, 0.02)) == []
    line = describe({"runtime": "onnx", "precision": "int8", "figures": f, "passed": False,
                     "status": "failed", "reason": "; ".join(reasons)})
    assert line.startswith("onnx:int8, max error 2% of std") and "\n" not in line


def test_a_bf16_pair_keeping_layers_f32_says_so():
    """The one line the card, the KServe annotations and refusals print names the layers a
    bf16 pair keeps f32, and an all-f32 file is said to compute f32 (it is served under the
    bf16 key)."""
    f = {"max_rel_std": 2e-6, "p999_rel_std": 1e-6}
    line = describe({"runtime": "openvino", "precision": "bf16", "figures": f, "passed": True,
                     "f32_layers": "all"})
    assert line.startswith("openvino:bf16 (every node kept f32: computes f32), max error")
    line = describe({"runtime": "openvino", "precision": "bf16", "figures": f, "passed": True,
                     "f32_layers": [1]})
    assert line.startswith("openvino:bf16 (layer 2 kept f32), max error")
    assert describe({"runtime": "openvino", "precision": "bf16", "figures": f, "passed": True,
                     "f32_layers": []}).startswith("openvino:bf16, max error")


def test_budget_on_the_users_data(tmp_path):
    """--data reads score's input and groups the sequences by length."""
    from pipeline.precision.gate import group_by_length
    from pipeline.scoring.bench import write_dataset
    from pipeline.specs import SPECS
    from pipeline.verify import user_sequences
    spec = SPECS["classifier"]
    path = write_dataset(tmp_path / "x.parquet", 40, spec.input_size)
    seqs, note = user_sequences(path, spec)
    assert len(seqs) == 40 and all(s.shape[1] == spec.input_size for s in seqs)
    assert note == str(path)                       # no row refused
    groups = group_by_length(seqs)
    assert sum(len(g) for g in groups) == 40
    assert all(len({len(s) for s in g}) == 1 for g in groups)
