"""How config tensor names map onto a TorchScript forward (backends/naming.py), checked
against the rules of NVIDIA's pytorch backend (src/libtorch.cc: forward argument names,
else `<name>__<index>`, else config order; outputs by index, else config order)."""
import pytest

from pipeline.serving.backends.naming import input_positions, output_positions

FORWARD = ["input", "lengths", "h_in"]


@pytest.mark.parametrize("names, positions", [
    (["input", "lengths", "h_in"], [0, 1, 2]),           # forward's argument names
    (["h_in", "input", "lengths"], [2, 0, 1]),           # ... in any config order
    (["x__0", "n__1", "h__2"], [0, 1, 2]),               # <name>__<index>
    (["h__2", "x__0", "n__1"], [2, 0, 1]),
    (["x", "n", "state"], [0, 1, 2]),                    # neither: config order
    (["input", "n", "h_in"], [0, 1, 2]),                 # one name not an argument: config order
    (["x__0", "n__b", "h__2"], [0, 1, 2]),               # an index not all digits: config order
])
def test_inputs_map_as_the_pytorch_backend_maps_them(names, positions):
    assert input_positions(names, FORWARD) == positions


def test_outputs_by_index_else_in_config_order():
    assert output_positions(["output__1", "h__0"]) == [1, 0]
    assert output_positions(["output", "h_out"]) == [0, 1]
    assert output_positions(["output__0"]) == [0]
    with pytest.raises(ValueError, match="an index appears twice"):
        output_positions(["a__0", "b__0"])


def test_bad_inputs_are_refused_naming_what_forward_takes():
    with pytest.raises(ValueError, match=r"forward takes 3 inputs \(input, lengths, h_in\); "
                                         r"the config lists 2 \(input__0, input__1\)"):
        input_positions(["input__0", "input__1"], FORWARD)
    with pytest.raises(ValueError, match="not 0..2 once each"):
        input_positions(["a__0", "b__1", "c__3"], FORWARD)
