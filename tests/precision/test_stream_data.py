"""verify --data: the budget's long stream is made of the user's own rows (their sequences
joined end to end, cycled where they hold fewer than 8 x 1200 steps, cut into the 8
streams), so the stream figures are "on that data" too. Checked on any CPU with the int8
pair (ONNX Runtime): its recorded stream figure is recomputed here from the user's module
(nn.LSTM + Linear at every step) and the int8 stream file stepped by ONNX Runtime over rows
joined by this test from the parquet file it wrote."""
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.verify import VerifyConfig
from pipeline.verify import main as verify

from . import models
from .conftest import LSTM_BUDGET


def write_rows(path, rows):
    """The user's rows in score's input form: id, sequence (list of F-float steps)."""
    steps = pa.array([[list(map(float, step)) for step in r] for r in rows],
                     type=pa.list_(pa.list_(pa.float32(), models.FEATURES)))
    pq.write_table(pa.table({"id": pa.array(np.arange(len(rows))), "sequence": steps}), path)
    return path


def test_long_stream_is_made_of_the_users_rows(users, tmp_path):
    import onnxruntime as ort
    out, _ = users
    shutil.copytree(out / "lstm2", tmp_path / "lstm2", ignore=shutil.ignore_patterns(".lock"))
    rng = np.random.default_rng(5)
    # not unit-normal: shifted and scaled, so a drawn stream would give other figures
    rows = [(rng.standard_normal((n, models.FEATURES)) * 2 + 0.5).astype(np.float32)
            for n in rng.integers(5, 400, 25)]
    data = write_rows(tmp_path / "mine.parquet", rows)
    report = verify(VerifyConfig("lstm2", tmp_path, "cpu", shapes=((1, 1),), data=data,
                                 budget=LSTM_BUDGET), log=lambda s: None)
    e = next(e for e in report["precisions"] if (e["runtime"], e["precision"]) == ("onnx", "int8"))
    assert e["stream"]["data"] == "user's rows joined"
    assert (e["stream"]["batch"], e["stream"]["steps"]) == (8, 1200)
    # the stream, joined here: 8 x 1200 steps from ~5,000 (cycled)
    joined = np.concatenate(rows)
    assert len(joined) < 8 * 1200
    joined = np.concatenate([joined] * (8 * 1200 // len(joined) + 1))[:8 * 1200]
    x = joined.reshape(8, 1200, models.FEATURES)
    theirs = models.lstm2()
    with torch.inference_mode():
        seq, _ = theirs.lstm(torch.from_numpy(x))
        want = theirs.head(seq).numpy().transpose(1, 0, 2).astype(float)   # (steps, 8, O)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp_path / "lstm2" / e["stream_artifact"]), options,
                                providers=["CPUExecutionProvider"])
    h = c = np.zeros((8, 2, models.HIDDEN), np.float32)
    got = []
    for t in range(1200):
        y, h, c = sess.run(["output", "h_out", "c_out"], {
            "input": x[:, t:t + 1], "lengths": np.ones(8, np.int64), "h_in": h, "c_in": c})
        got.append(y)
    got = np.stack(got).astype(float)
    assert np.abs(got - want).max() / want.std() == pytest.approx(e["stream"]["max_rel_std"],
                                                                  rel=1e-3)
    assert (got.argmax(-1) == want.argmax(-1)).mean() == pytest.approx(
        e["stream"]["label_agree"])
