"""compare()'s float32-drift rule: it widens the bound only by drift_factor x the drift
measured on the input, and a real change (1e-3 weight noise) still fails at long sequences."""
import numpy as np

from pipeline.compare import compare
from pipeline.runtimes import load_runner
from pipeline.runtimes.pytorch import float64_twin
from pipeline.specs import SPECS, Tolerance

from ..perturb import noisy_onnx_weights


def test_bound_is_the_larger_of_tolerance_and_k_times_measured_drift():
    tol = Tolerance(1e-4, 0.0)
    expected = np.zeros((2, 2))
    sibling = expected + np.array([[2e-5, 0], [0, 0]])         # D = 2e-5 -> 8 D = 1.6e-4
    off = lambda e: expected + np.array([[0, 0], [0, e]])      # noqa: E731
    assert not compare(off(1.5e-4), expected, tol).passed                  # plain tolerance
    c = compare(off(1.5e-4), expected, tol, exact=[expected, sibling], drift_factor=8.0)
    assert c.passed and c.f32_drift == 2e-5
    assert not compare(off(1.7e-4), expected, tol, exact=[expected, sibling],
                       drift_factor=8.0).passed
    # no drift measured: nothing is widened
    assert not compare(off(1.5e-4), expected, tol, exact=expected, drift_factor=8.0).passed


def test_weight_noise_still_fails_at_long_sequences(exported, tmp_path):
    """The classifier (expansive recurrence, the largest drift) at 13 x 2048 and 1 x 2048
    (Scan and RNN-operator branches): the honest model.onnx passes, one with 1e-3 noise on
    its weights fails, in every ONNX runtime."""
    folder = exported["out"] / "classifier"
    spec = SPECS["classifier"]
    rng = np.random.default_rng(0)
    noisy_onnx_weights(folder / "model.onnx", tmp_path / "noisy.onnx", rng)
    eager = load_runner("torch", spec, folder)
    exact_model = float64_twin(eager)
    for batch in (13, 1):
        x = rng.standard_normal((batch, 2048, spec.input_size)).astype(np.float32)
        feeds = {spec.input_name: x}
        expected = eager.run(feeds)["output"]
        exact = [y["output"] for y in exact_model.spread(feeds)]
        for runtime in ("onnx", "openvino", "tract"):
            for path, should_pass in ((folder / "model.onnx", True), (tmp_path / "noisy.onnx", False)):
                actual = load_runner(runtime, spec, path).run(feeds)["output"]
                c = compare(actual, expected, spec.tolerance("cpu"), True, exact,
                            spec.drift_factor)
                assert c.passed is should_pass, (runtime, path.name, batch, c)
