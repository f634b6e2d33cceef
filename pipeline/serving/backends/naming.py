"""Which TorchScript argument and result each config tensor is: the rules of NVIDIA's pytorch
backend (triton-inference-server/pytorch_backend, src/libtorch.cc `GetNamingConvention`,
`AddInputToMap`, `ValidateOutputs`; README "Configuration"), applied by the stand-in backend
(model.py, which gets this file beside it) and by the in-process reference (published.py).

    input_positions(["input", "lengths", "h_in"], ["x", "lengths", "h"])   # -> [0, 1, 2]
    output_positions(["output", "h_out"])                                # -> [0, 1]

Inputs: if every config name is one of forward's argument names, by name; else if every
name is `<name>__<index>`, by index; else in config order. Outputs (a TorchScript result has
no names): `<name>__<index>` by index, else config order. Standard library only: it also
runs in Triton's stub.
"""


def _index(name):
    """The index of `<name>__<index>` (the first `__`, then digits only), else None."""
    at = name.find("__")
    rest = name[at + 2:] if at >= 0 else ""
    return int(rest) if rest.isascii() and rest.isdigit() else None


def _checked(positions, names, kind):
    if sorted(positions) != list(range(len(names))):
        raise ValueError(f"config {kind}s {names} map to positions {positions}, not "
                         f"0..{len(names) - 1} once each")
    return positions


def input_positions(names, arguments):
    """Forward's argument position of each config input, in config order. `arguments`:
    forward's argument names (without self); their count must equal the config's."""
    if len(arguments) != len(names):
        raise ValueError(f"forward takes {len(arguments)} inputs ({', '.join(arguments)}); "
                         f"the config lists {len(names)} ({', '.join(names)})")
    if all(name in arguments for name in names):
        return _checked([arguments.index(name) for name in names], names, "input")
    indices = [_index(name) for name in names]
    if None not in indices:
        return _checked(indices, names, "input")
    return list(range(len(names)))


def output_positions(names):
    """The position in forward's result of each config output, in config order."""
    indices = [_index(name) for name in names]
    if None in indices:
        return list(range(len(names)))
    if len(set(indices)) != len(indices):
        raise ValueError(f"config outputs {names}: an index appears twice")
    return indices
