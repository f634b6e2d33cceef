import pytest
import torch

from pipeline.models import build_model
from pipeline.specs import MODEL_NAMES, SPECS

from .seeds import seed_model

SHAPES = [(1, 1), (3, 7), (16, 50)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_is_the_seeds(name):
    ours, seed = build_model(SPECS[name]), seed_model(SPECS[name])
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: v.shape for k, v in seed.state_dict().items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch,seq", SHAPES)
def test_same_outputs_as_seed_class(name, batch, seq):
    torch.manual_seed(1)
    seed = seed_model(SPECS[name]).eval()
    ours = build_model(SPECS[name]).eval()
    ours.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(batch, seq, SPECS[name].input_size)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), seed(x), rtol=0, atol=0)


def test_sizes_are_configurable():
    from pipeline.models import Forecaster
    model = Forecaster(input_size=3, hidden_size=4, output_size=2)
    assert model(torch.randn(5, 6, 3)).shape == (5, 2)


def test_forecaster_zero_state_follows_input_dtype():
    # The seed's torch.zeros state is float32 on the CPU and breaks a float64 input.
    spec = SPECS["forecaster"]
    seed = seed_model(spec).double()
    x = torch.randn(2, 5, spec.input_size, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        seed(x)
    ours = build_model(spec).double()
    ours.load_state_dict(seed.state_dict())
    y = ours(x)
    assert y.dtype == torch.float64
    # same numbers as the seed computes in float32
    torch.testing.assert_close(y.float(), seed.float()(x.float()), rtol=1e-5, atol=1e-6)
