"""Property: at any batch in 1..64 and seq in 1..512, on any values, every runtime (TorchScript,
and model.onnx in ONNX Runtime, OpenVINO, tract and the ONNX reference evaluator) gives eager
PyTorch's outputs within the spec's CPU tolerance, widened only to drift_factor x the float32
drift measured on that input (float64 and its rounded siblings; compare.py), both models."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.compare import compare
from pipeline.runtimes import RUNTIMES, open_runners
from pipeline.runtimes.pytorch import float64_twin
from pipeline.specs import MODEL_NAMES


@pytest.fixture(scope="module")
def runners(exported):
    """{model: (eager, eager in float64, [every other runtime])}, opened after the manifest check."""
    result = {}
    for name in MODEL_NAMES:
        eager, *exported_runners = open_runners(exported["out"] / name, RUNTIMES)
        result[name] = eager, float64_twin(eager), exported_runners
    return result


@pytest.mark.parametrize("name", MODEL_NAMES)
@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 64), seq=st.integers(1, 512), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1e-3, 1.0, 10.0]))
def test_exported_runtimes_match_eager(runners, name, batch, seq, seed, scale):
    eager, eager64, others = runners[name]
    spec = eager.spec
    x = (scale * np.random.default_rng(seed).standard_normal((batch, seq, spec.input_size))
         ).astype(spec.dtype)                                   # (batch, seq, features)
    feeds = {spec.input_name: x}
    expected = eager.run(feeds)[spec.output_name]               # (batch, output_size)
    exact = [y[spec.output_name] for y in eager64.spread(feeds)]
    for runner in others:
        actual = runner.run(feeds)[spec.output_name]
        c = compare(actual, expected, spec.tolerance("cpu"), spec.task == "classification",
                    exact, spec.drift_factor)
        assert c.passed, f"{runner.name} at batch {batch}, seq {seq}, scale {scale}: {c.reason}"
