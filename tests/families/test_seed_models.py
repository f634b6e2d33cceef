"""The seed models as instances of the families: the seed classes' weights, verbatim."""
import pytest
import torch

from pipeline.families import build_model
from pipeline.specs import MODEL_NAMES, SPECS

from ..seeds import seed_model

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
    from dataclasses import replace
    spec = replace(SPECS["forecaster"], input_size=3, hidden_size=4, output_size=2)
    assert build_model(spec)(torch.randn(5, 6, 3)).shape == (5, 2)


def test_seed_config_written_before_the_families_still_loads(trained, tmp_path):
    """config.json files name the seeds' `arch`; they load as the same specs, and the
    weights saved beside them load into the seed classes verbatim."""
    import json
    import shutil

    from safetensors.torch import load_file

    from pipeline.checkpoint import load_checkpoint
    for name, arch in (("forecaster", "rnn_cell_loop"), ("classifier", "rnn")):
        folder = shutil.copytree(trained["out"] / name, tmp_path / name)
        config = json.loads((folder / "config.json").read_text())
        model = config["recipe"]["model"]
        for key in ("cell", "form", "num_layers", "bidirectional", "cell_state_in_name",
                    "cell_state_out_name"):
            model.pop(key)
        model["arch"] = arch
        (folder / "config.json").write_text(json.dumps(config))
        _, loaded = load_checkpoint(folder)
        assert loaded["recipe"].model == SPECS[name]
        seed_model(SPECS[name]).load_state_dict(load_file(folder / "weights.safetensors"),
                                                strict=True)


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
