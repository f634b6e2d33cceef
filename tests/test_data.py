import pytest
import torch

from pipeline.data import baseline, make_split
from pipeline.specs import MODEL_NAMES, RECIPES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_data(name):
    a = make_split(RECIPES[name], "val", seed=3)
    b = make_split(RECIPES[name], "val", seed=3)
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_splits_and_seeds_differ(name):
    recipe = RECIPES[name]
    val, test = make_split(recipe, "val", 0)[0][0], make_split(recipe, "test", 0)[0][0]
    other = make_split(recipe, "val", 1)[0][0]
    assert not torch.equal(val[:, :1], test[:, :1])
    assert not torch.equal(val[:, :1], other[:, :1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shapes_sizes_and_lengths(name):
    recipe = RECIPES[name]
    chunks = make_split(recipe, "test", 0)
    assert sum(x.shape[0] for x, _ in chunks) == recipe.data.test_size
    lengths = {x.shape[1] for x, _ in chunks}
    assert len(lengths) > 1, "training should see several sequence lengths"
    assert all(recipe.data.seq_min <= n <= recipe.data.seq_max for n in lengths)
    for x, y in chunks:
        assert x.dtype == torch.float32 and x.shape[2] == recipe.model.input_size
        assert y.shape[0] == x.shape[0]


def test_baselines():
    # majority class of balanced labels is about one half
    assert 0.45 < baseline(RECIPES["classifier"], make_split(RECIPES["classifier"], "test", 0)) < 0.55
    # repeating the last value is a real but beatable forecaster: error well above the noise
    naive = baseline(RECIPES["forecaster"], make_split(RECIPES["forecaster"], "test", 0))
    assert naive > 5 * RECIPES["forecaster"].data.noise ** 2
