"""Property: at any batch in 1..64 and seq in 1..512, on any values, the ONNX and TorchScript
artifacts give eager PyTorch's outputs within the spec's CPU tolerance (both models)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.compare import compare
from pipeline.runtimes import open_runners
from pipeline.specs import MODEL_NAMES


@pytest.fixture(scope="module")
def runners(exported):
    """{model: (eager, [torchscript, onnx])}, each opened after its manifest check."""
    result = {}
    for name in MODEL_NAMES:
        eager, *exported_runners = open_runners(exported["out"] / name,
                                                ("torch", "torchscript", "onnx"))
        result[name] = eager, exported_runners
    return result


@pytest.mark.parametrize("name", MODEL_NAMES)
@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 64), seq=st.integers(1, 512), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1e-3, 1.0, 10.0]))
def test_exported_runtimes_match_eager(runners, name, batch, seq, seed, scale):
    eager, others = runners[name]
    spec = eager.spec
    x = (scale * np.random.default_rng(seed).standard_normal((batch, seq, spec.input_size))
         ).astype(spec.dtype)                                   # (batch, seq, features)
    feeds = {spec.input_name: x}
    expected = eager.run(feeds)[spec.output_name]               # (batch, output_size)
    for runner in others:
        actual = runner.run(feeds)[spec.output_name]
        c = compare(actual, expected, spec.tolerance("cpu"), spec.task == "classification")
        assert c.passed, f"{runner.name} at batch {batch}, seq {seq}, scale {scale}: {c.reason}"
