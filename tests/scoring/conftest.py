"""Shared by the scoring tests: ragged data, Parquet files of it, and the reference (the
seed documents' classes with the trained weights, each sequence run alone)."""
import numpy as np
import pytest
import torch

from pipeline.checkpoint import read_config

from ..seeds import seed_model


def spec_of(out, name):
    return read_config(out / name)["recipe"].model


def ragged(spec, n, lo=1, hi=40, seed=0):
    """n float32 sequences (steps, F) of lengths drawn from lo..hi."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(k), spec.input_size)).astype(np.float32)
            for k in rng.integers(lo, hi + 1, n)]


def reference(out, name, sequences):
    """(n, O): the seed class on each sequence alone, batch 1, no padding."""
    from safetensors.torch import load_file
    model = seed_model(spec_of(out, name))
    model.load_state_dict(load_file(out / name / "weights.safetensors"))
    with torch.inference_mode():
        return np.concatenate([model.eval()(torch.from_numpy(s[None])).numpy()
                               for s in sequences])


def write_parquet(path, sequences, ids=None, fixed=True, row_group_size=None, **columns):
    import pyarrow.parquet as pq

    from pipeline.scoring.dataset import sequences_table
    table = sequences_table(sequences, ids, fixed=fixed)
    for name, values in columns.items():
        table = table.append_column(name, values)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def read_output(path):
    """{id: output row} and the table, asserting every id appears once."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an id appears more than once"
    outputs = table.column("output").to_pylist()
    return dict(zip(ids, outputs)), table


def assert_matches(out, name, by_id, sequences, ids=None):
    """Every sequence's output equals the reference within the spec's CPU tolerance."""
    spec = spec_of(out, name)
    ids = list(range(len(sequences))) if ids is None else list(ids)
    assert sorted(by_id, key=str) == sorted(ids, key=str)
    expected = reference(out, name, sequences)                      # (n, O)
    got = np.array([by_id[i] for i in ids], np.float32)             # (n, O)
    tol = spec.tolerance("cpu")
    assert np.all(np.abs(got - expected) <= tol.atol + tol.rtol * np.abs(expected)), \
        np.abs(got - expected).max()


@pytest.fixture(scope="session")
def out(exported):
    """The session's artifact root with both models trained and exported."""
    return exported["out"]


@pytest.fixture(scope="session")
def published(out, tmp_path_factory):
    """The forecaster verified (a quick matrix) and published, signed with key "a":
    {"version": <registry>/forecaster_onnx/1, "keys": {"a": ..., "b": ...}} (keygen's dicts)."""
    import shutil

    from pipeline.publishing.publish import PublishConfig
    from pipeline.publishing.publish import main as publish
    from pipeline.publishing.signing import keygen
    from pipeline.verify import VerifyConfig
    from pipeline.verify import main as verify

    tmp = tmp_path_factory.mktemp("published")
    root = tmp / "exported"
    shutil.copytree(out / "forecaster", root / "forecaster",
                    ignore=shutil.ignore_patterns(".lock"))
    verify(VerifyConfig("forecaster", root, "cpu", ((1, 1), (2, 3))), log=lambda s: None)
    keys = {k: keygen(tmp / k) for k in ("a", "b")}
    publish(PublishConfig("forecaster", root, signing_key=keys["a"]["private"]),
            log=lambda s: None)
    return {"version": root / "model_repository" / "forecaster_onnx" / "1", "keys": keys}
