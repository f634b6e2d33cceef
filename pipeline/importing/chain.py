"""`import --module`: the user's module -> a spec, the canonical model with its weights,
checked equal to the user's forward.

    spec, model, mapping, notes, checked = import_module(target, state, task, relu, name)

The chain comes from torch.fx (trace.py), or for a cell stepped in a Python loop from the
order its modules run in (`record_cell_loop`). A chain of the seed form (features ->
one recurrent layer -> its last step -> Linear) is saved as a seed-form spec, exactly as
the state-dict import of issue 17 saved it, so its artifacts stay what they were.
"""
from __future__ import annotations

from ..errors import first_line
from ..layers import Embedding, Readout, Recurrent
from ..specs import ModelSpec
from .module import check_module, load_user_module
from .statedict import ImportRefused
from .trace import CELL_MODULES, Traced, leaf_layer, read_chain


def record_cell_loop(theirs) -> list[Traced]:
    """Candidate chains of a forward stepping a cell in a loop, read from the order its
    modules run in at seq 3: modules once each, the cell 3 times, modules once each. The
    cell's last h as the readout first, every step's h (per-step output) second."""
    import torch
    from torch import nn

    leaves = {n: m for n, m in theirs.named_modules() if n and not list(m.children())}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in leaves.items()]
    emb = next((m for m in leaves.values() if isinstance(m, nn.Embedding)), None)
    width = next((getattr(m, a) for m in leaves.values() for a in ("in_features", "input_size")
                  if hasattr(m, a)), None)
    try:
        x = torch.randint(0, emb.num_embeddings, (2, 3)) if emb is not None else \
            torch.randn(2, 3, width or 1)
        with torch.inference_mode():
            theirs(x)
    except Exception as exc:
        raise ImportRefused(f"--module: its forward cannot be traced, and running it as a "
                            f"cell loop failed ({first_line(exc)})") from None
    finally:
        for h in hooks:
            h.remove()
    cells = [i for i, n in enumerate(order) if type(leaves[n]).__name__ in CELL_MODULES]
    if len(cells) != 3 or cells != list(range(cells[0], cells[0] + 3)) or \
            len({order[i] for i in cells}) != 1:
        raise ImportRefused("--module: its forward cannot be traced by torch.fx and is not one "
                            "cell stepped once per time step")
    cell_name = order[cells[0]]
    cell = leaves[cell_name]
    kind = {"RNNCell": "rnn_relu" if getattr(cell, "nonlinearity", "") == "relu" else "rnn_tanh",
            "GRUCell": "gru", "LSTMCell": "lstm"}[type(cell).__name__]
    before, after = order[:cells[0]], order[cells[-1] + 1:]
    layers, prefixes = [], {}
    for names, tail in ((before, False), (after, True)):
        if tail:
            prefixes[len(layers)] = cell_name
            layers.append(Recurrent(kind, "cell_loop", cell.input_size, cell.hidden_size))
        for n in names:
            m = leaves[n]
            layer = Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx) \
                if isinstance(m, nn.Embedding) else leaf_layer(m)
            if layer is None:
                raise ImportRefused(f"--module: {type(m).__name__} ({n}) is not a layer kind the "
                                    "pipeline translates")
            if layer.kind in ("embedding", "linear", "layer_norm"):
                prefixes[len(layers)] = n
            layers.append(layer)
    at = len(before) + 1
    read = Readout("last_step", cell.hidden_size)
    kind_in = "tokens" if emb is not None else "features"
    return [Traced(layers[:at] + [read] + layers[at:], kind_in, {k + (k >= at): v for k, v in
                                                                 prefixes.items()}, []),
            Traced(layers, kind_in, prefixes, [])]


def _spec(name: str, task: str, traced: Traced) -> ModelSpec:
    """A seed-form spec where the chain is one, else a chain spec; ImportRefused if the
    chain is not well formed."""
    layers = traced.layers
    rec = next((layer for layer in layers if layer.kind == "recurrent"), None)
    if rec is None:
        raise ImportRefused("--module: its forward has no recurrent layer")
    if traced.kind == "tokens":
        features = layers[0].num
    else:
        features = next((getattr(layer, a) for layer in layers
                         for a in ("inputs", "size") if hasattr(layer, a)), rec.inputs)
    out = features if traced.kind == "features" else 0
    for layer in layers:
        out = layer.out_width(out)
    if task == "classification" and out < 2:
        raise ImportRefused("a classifier needs one logit per class (>= 2 outputs); import a "
                            "single-logit model with --task regression")
    common = dict(cell=rec.cell, form=rec.form, num_layers=rec.layers,
                  bidirectional=rec.bidirectional)
    seed_form = traced.kind == "features" and len(layers) == 3 and not rec.packed and \
        layers[0] is rec and layers[1].kind == "readout" and layers[2].kind == "linear" and \
        (layers[1].how == "last_step" or layers[1].how == "final_state" and rec.directions == 1)
    try:
        if seed_form:
            return ModelSpec(name, task, features, rec.hidden, out, **common)
        return ModelSpec(name, task, features, rec.hidden, out, **common,
                         input_kind=traced.kind, layers=tuple(layers))
    except ValueError as exc:
        raise ImportRefused(f"--module: {first_line(exc)}") from None


def _weights(spec: ModelSpec, traced: Traced, state: dict):
    """The canonical model holding the user's weights, and {canonical key: user key}."""
    from ..families.base import MODULE_NAMES
    from ..network import build_chain
    from .statedict import canonical

    if spec.layers:
        model = build_chain(spec)
        mapping = {}
        for key in model.state_dict():
            _, index, _, rest = key.split(".", 3)
            user = f"{traced.prefixes.get(int(index))}.{rest}"
            if user in state:
                mapping[key] = user
    else:
        rnn, head = MODULE_NAMES[spec.form]
        mapping = {}
        for (index, prefix), ours in zip(sorted(traced.prefixes.items()), (rnn, head)):
            mapping.update({f"{ours}.{k[len(prefix) + 1:]}": k for k in state
                            if k.startswith(prefix + ".")})
    return canonical(spec, state, mapping, build=(lambda: build_chain(spec)) if spec.layers
                     else None), mapping


def import_module(target: str, state: dict, task: str, nonlinearity: str | None, name: str):
    """(spec, canonical model, {canonical key: user key}, notes, shapes checked)."""
    theirs = load_user_module(target, state)
    traced = read_chain(theirs)
    candidates = [traced] if traced is not None else record_cell_loop(theirs)
    refusal = None
    for traced in candidates:
        spec = _spec(name, task, traced)
        cells = {layer.cell for layer in spec.chain if layer.kind == "recurrent"}
        if nonlinearity and cells != {f"rnn_{nonlinearity}"}:
            raise ImportRefused(f"--nonlinearity {nonlinearity}: your module's recurrent layers "
                                f"are {', '.join(sorted(cells))}; --nonlinearity is for plain "
                                "RNN weights without --module")
        model, mapping = _weights(spec, traced, state)
        unused = sorted(set(state) - set(mapping.values()))
        notes = list(traced.notes) + ([f"parameters not used by the forward: {unused[:3]}"]
                                      if unused else [])
        from ..layers.chain import describe_chain
        try:
            checked = check_module(target, theirs, model, spec, "the chain read from it ("
                                   + describe_chain(spec) + ")", traced.sorted_lengths)
            return spec, model, mapping, notes, checked
        except ImportRefused as exc:
            refusal = refusal or exc
    raise refusal
