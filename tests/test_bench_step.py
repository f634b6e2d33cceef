"""bench_step's ORT-only stream form (each LSTM operator given its own sequence_lens) against
the user's own nn.LSTM run row by row from its state over its own length; and the command
end to end on a tiny budget (figures printed and saved, never asserted)."""
import json

import numpy as np
import pytest
import torch

from pipeline.bench_step import _session, _weights, build, main
from pipeline.checkpoint import read_config
from pipeline.export import ExportConfig
from pipeline.export import main as export
from pipeline.importing import ImportConfig
from pipeline.importing import main as import_model
from tests.precision import models


@pytest.fixture(scope="module")
def lstm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_step")
    user = models.lstm2()
    torch.save(user.state_dict(), out / "lstm2.pt")
    import_model(ImportConfig("lstm2", out / "lstm2.pt", "classification",
                              module="tests.precision.models:lstm2", out=out), log=lambda s: None)
    export(ExportConfig("lstm2", out), log=lambda s: None)
    return out, user


def test_ort_only_form_equals_each_row_alone_from_its_state(lstm2):
    out, user = lstm2
    spec = read_config(out / "lstm2")["recipe"].model
    layers, head = _weights(out / "lstm2" / "model_stream.onnx")
    session = _session(build(layers, head, spec).SerializeToString(), 1)
    rng = np.random.default_rng(5)
    lengths = np.array([9, 4, 1, 9, 6])
    B, L, H = len(lengths), 2, models.HIDDEN
    x = rng.standard_normal((B, 9, models.FEATURES)).astype(np.float32)
    x[1, 4:] = 1e3                                     # padding past a row's length: never read
    h0, c0 = (rng.standard_normal((B, L, H)).astype(np.float32) for _ in range(2))
    y, h1, c1 = session.run(None, {"input": x, "lengths": lengths, "h_in": h0, "c_in": c0})
    with torch.no_grad():
        for i, n in enumerate(lengths):                # the user's module, one row alone
            state = tuple(torch.from_numpy(s[i]).unsqueeze(1) for s in (h0, c0))  # (L, 1, H)
            _, (h, c) = user.lstm(torch.from_numpy(x[i:i + 1, :n]), state)
            np.testing.assert_allclose(h1[i], h[:, 0].numpy(), atol=2e-5)
            np.testing.assert_allclose(c1[i], c[:, 0].numpy(), atol=2e-5)
            np.testing.assert_allclose(y[i], user.head(h[-1, 0]).numpy(), atol=2e-5)


def test_the_command_prints_and_saves_its_figures(lstm2):
    out, _ = lstm2
    lines = []
    result = main(out, "lstm2", repeats=1, log=lines.append)
    saved = json.loads((out / "lstm2" / "benchmark_step.json").read_text())
    assert saved["times"].keys() == result["times"].keys() >= {
        "floor run", "portable io_binding", "ort_only run", "bare io_binding"}
    assert max(saved["ragged_max_abs_diff"]) < 1e-5
    assert any("ort_only run" in line for line in lines)
