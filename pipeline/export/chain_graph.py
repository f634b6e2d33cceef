"""model.onnx and model_stream.onnx of a chain of layers (ModelSpec.layers), op by op.

    model = build_chain_onnx(spec, model.state_dict())          # input[, lengths] -> output
    stream = build_chain_stream_onnx(spec, model.state_dict())  # + states in and out

Each stateless layer writes its own nodes (pipeline/layers/<kind>.py `onnx`); a recurrent
layer is written here by recurrent_graph.py's `RecurrentNet`, the same forms the seed-form models use
(the native operator behind an If on batch x H, or the Scan), giving every step's output
(batch, seq, D*H). A one-way layer followed by a last-step or final-state readout gives its
final state instead (no per-step copy). With `lengths` (a packed forward, and every stream)
the readout reads each row at its own last valid step, which a one-way recurrence reaches
without reading the padding after it. A packed layer's per-step output is masked to zeros
past each row's length (pad_packed_sequence's), and a packed bidirectional layer's
backward direction runs over each row's own steps reversed (`_native_flipped`, or the
Scan with `lengths`).

The stream graph runs each recurrent layer from its given states (onnx_graph.stream_states:
each state gathered at lengths - 1, and the top layer's h at every step for what follows).
"""
from __future__ import annotations

from pathlib import Path

from ..families.graph import GraphBuilder, value_info
from ..network import layer_weights
from ..specs import ModelSpec
from .onnx_graph import stream_states
from .recurrent_graph import IR_VERSIONS, RecurrentNet, fill, fill_int, flip_rows, if_else


def _net(layer, state: dict, index: int) -> RecurrentNet:
    """recurrent_graph's writer for chain layer `index` (its weights renamed to the
    seed-form keys it reads)."""
    sub = ModelSpec(f"layer{index}", "regression", layer.inputs, layer.hidden, 1,
                    cell=layer.cell, form=layer.form, num_layers=layer.layers,
                    bidirectional=layer.bidirectional)
    prefix = f"layers.{index}.rnn."
    target = "rnn." if layer.form == "stack" else "rnn_cell."
    return RecurrentNet(sub, {target + k[len(prefix):]: v for k, v in state.items()
                      if k.startswith(prefix)})


def _steps(b: GraphBuilder, net: RecurrentNet, x: str, form: str, lengths: str | None = None) -> str:
    """Every step's top-layer output (B, S, D*H), in `form` (native or scan). `lengths`: a
    packed bidirectional layer, whose backward direction starts at each row's own last
    valid step (the operators' sequence_lens is not portable: OpenVINO and the reference
    evaluator ignore it, tract refuses it; docs/chains.md)."""
    if lengths is not None and form == "native" and net.fam.native_op:
        return _native_flipped(b, net, x, lengths)
    if lengths is not None:
        top = net.scan(b, x, emit_top=(0,), lengths=lengths)[-1]
        ys = [b.op("Transpose", [steps[0]], perm=[2, 0, 1]) for _, steps in top]
        return b.op("Concat", ys, axis=2)
    if form == "native" and net.fam.native_op:
        y, _ = net.native(b, x)[-1]                                     # (S, D, B, H)
        return b.op("Reshape", [b.op("Transpose", [y], perm=[2, 0, 1, 3]), b.ints(0, 0, -1)])
    top = net.scan(b, x, emit_top=(0,))[-1]                              # per direction
    ys = [b.op("Transpose", [steps[0]], perm=[2, 0, 1]) for _, steps in top]   # (B, S, H)
    return ys[0] if len(ys) == 1 else b.op("Concat", ys, axis=2)


def _final(b: GraphBuilder, net: RecurrentNet, x: str, form: str) -> str:
    """A one-way layer's top final h (B, H): its output at the last step."""
    if form == "native" and net.fam.native_op:
        _, finals = net.native(b, x)[-1]
        return b.op("Squeeze", [finals[0], b.ints(0)])
    return b.op("Transpose", [net.scan(b, x)[-1][0][0][0]], perm=[1, 0])


def _native_flipped(b: GraphBuilder, net: RecurrentNet, x: str, lengths: str) -> str:
    """A packed bidirectional layer with the family's operator, one forward operator per
    direction: the backward one runs over each row's first lengths steps reversed, and its
    output is flipped back the same way (recurrent_graph.flip_rows). (B, S, 2H)"""
    import numpy as np

    fam, H = net.fam, net.H
    xs = b.op("Transpose", [x], perm=[1, 0, 2])                             # (S, B, F)
    seq = b.op("Shape", [x], start=1, end=2)
    batch = b.op("Shape", [x], start=0, end=1)
    zeros = b.op("ConstantOfShape", [b.op("Concat", [b.ints(1), batch, b.ints(H)], axis=0)],
                 value=fill(0.0))                                           # (1, B, H)
    index: list = []
    for dirs in net.layers:
        ys = []
        for d, w in enumerate(dirs):
            g = w.gates(fam.onnx_order)
            xd = xs if d == 0 else flip_rows(b, xs, seq, lengths, index, batch_axis=1)
            y, *_ = b.op(fam.native_op, [xd, b.const(g.w_ih[None]), b.const(g.w_hh[None]),
                                         b.const(np.concatenate([g.b_ih, g.b_hh])[None]), "",
                                         *[zeros] * fam.states],
                         1 + fam.states, **fam.native_attrs(H))              # (S, 1, B, H)
            y = b.op("Squeeze", [y, b.ints(1)])                               # (S, B, H)
            ys.append(y if d == 0 else flip_rows(b, y, seq, lengths, index, batch_axis=1))
        xs = b.op("Concat", ys, axis=2)                                      # (S, B, 2H)
    return b.op("Transpose", [xs], perm=[1, 0, 2])


def _flips(layer) -> bool:
    """A packed bidirectional layer: its backward direction reverses each row alone."""
    return layer.packed and layer.bidirectional


def _mask(b: GraphBuilder, x: str, lengths: str) -> str:
    """x (B, S, W) with zeros at each row's steps past its length, as pad_packed_sequence
    gives them (what the recurrence computed over the padding is never passed on)."""
    import numpy as np

    seq = b.op("Shape", [x], start=1, end=2)
    t = b.op("CumSum", [b.op("ConstantOfShape", [seq], value=fill_int(1)),
                        b.const(0, "axis", np.int64)], exclusive=1)        # (S,) 0..S-1
    live = b.op("Less", [b.op("Unsqueeze", [t, b.ints(0)]),
                         b.op("Unsqueeze", [lengths, b.ints(1)])])         # (B, S)
    return b.op("Where", [b.op("Unsqueeze", [live, b.ints(2)]), x,
                          b.const(np.zeros(1, np.float32), "zero")])


def _one_if(b: GraphBuilder, cond, write) -> str:
    """write(b, form) -> output name, under ONE If (cond: native, else scan) for the whole
    chain: tract cannot type a graph holding two If nodes ("Duplicate node name: If"), so
    the layers' forms are chosen together; no If when no layer has two forms."""
    if cond is None:
        return write(b, "scan")

    def native(sb):
        return [write(sb, "native")]

    def scan(sb):
        return [write(sb, "scan")]
    return if_else(b, cond, native, scan)[0]


def build_chain_onnx(spec: ModelSpec, state: dict, opset: int = 18):
    """model.onnx: every recurrent layer's native operator while batch <= the smallest of
    their families' limits (batch x H measured per family), else the Scan."""
    b = GraphBuilder()
    chain = spec.chain
    lengths = spec.lengths_name if spec.takes_lengths else None
    nets = {i: _net(layer, state, i) for i, layer in enumerate(chain)
            if layer.kind == "recurrent"}

    def write(b, form):
        x, skip = spec.input_name, False
        for i, layer in enumerate(chain):
            if skip:          # a readout already folded into its recurrent layer
                skip = False
                continue
            w = layer_weights(state, i)
            after = chain[i + 1] if i + 1 < len(chain) else None
            if layer.kind == "recurrent" and lengths is None and after is not None and \
                    after.kind == "readout" and after.how in ("last_step", "final_state") \
                    and not layer.bidirectional:
                x, skip = _final(b, nets[i], x, form), True
            elif layer.kind == "recurrent":
                x = _steps(b, nets[i], x, form, lengths if _flips(layer) else None)
                if layer.packed and (after is None or after.kind != "readout"):
                    x = _mask(b, x, lengths)    # pad_packed_sequence's zeros past lengths
            elif layer.kind == "readout":
                x = layer.onnx(b, x, w, lengths)
            else:
                x = layer.onnx(b, x, w)
        return x

    limits = [n.fam.native_batch_limit(n.H) for n in nets.values() if n.fam.native_op]
    cond = None
    if limits:
        batch = b.op("Shape", [spec.input_name], start=0, end=1)
        cond = b.op("LessOrEqual", [batch, b.ints(min(limits))])
    _name_output(b, _one_if(b, cond, write), spec.output_name)
    return b.model([value_info(t.name, list(t.shape), t.dtype) for t in spec.inputs],
                   [value_info(spec.output_name, list(spec.output.shape))],
                   opset=opset, ir_version=IR_VERSIONS[opset])


def build_chain_stream_onnx(spec: ModelSpec, state: dict, opset: int = 18):
    """model_stream.onnx: one-state families run their operator from the given states; an
    LSTM's runs when every row is full length, else its Scan (as onnx_graph's stream graph),
    under one If for the whole chain."""
    b = GraphBuilder()
    lengths = spec.lengths_name
    nets = {i: _net(layer, state, i) for i, layer in enumerate(spec.chain)
            if layer.kind == "recurrent"}

    def write(b, form):
        x, names, outs = spec.input_name, iter(spec.stream_inputs[2:]), []
        for i, layer in enumerate(spec.chain):
            w = layer_weights(state, i)
            if layer.kind == "recurrent":
                ins = [next(names).name for _ in range(layer.states)]
                states, x = stream_states(b, nets[i], x, lengths, ins, steps=True,
                                          full=form == "native")
                outs += states
            elif layer.kind == "readout":
                x = layer.onnx(b, x, w, lengths)
            else:
                x = layer.onnx(b, x, w)
        return [x, *outs]

    cond = None
    if any(n.fam.native_op and n.fam.states == 2 for n in nets.values()):
        shortest = b.op("ReduceMin", [lengths], keepdims=1)
        cond = b.op("Equal", [shortest, b.op("Shape", [spec.input_name], start=1, end=2)])
    if cond is None:
        results = write(b, "scan")
    else:
        results = if_else(b, cond, lambda sb: write(sb, "native"), lambda sb: write(sb, "scan"))
    for value, t in zip(results, spec.stream_outputs):
        _name_output(b, value, t.name)
    return b.model([value_info(t.name, list(t.shape), t.dtype) for t in spec.stream_inputs],
                   [value_info(t.name, list(t.shape), t.dtype) for t in spec.stream_outputs],
                   opset=opset, ir_version=IR_VERSIONS[opset])


def _name_output(b: GraphBuilder, value: str, name: str) -> None:
    """Give the top-graph tensor `value` the contract name `name` (no Identity: OpenVINO
    would name the output by the node before it as well, and list that name first)."""
    if value in [i for node in b.nodes for i in node.input] or \
            value not in [o for node in b.nodes for o in node.output]:
        b.op("Identity", [value], [name])     # read again, or a graph input: a copy
        return
    for node in b.nodes:
        for i, out in enumerate(node.output):
            if out == value:
                node.output[i] = name


def export_chain_onnx(model, spec: ModelSpec, path: Path, opset: int) -> None:
    Path(path).write_bytes(build_chain_onnx(spec, model.state_dict(), opset).SerializeToString())


def export_chain_stream_onnx(model, spec: ModelSpec, path: Path, opset: int) -> None:
    Path(path).write_bytes(
        build_chain_stream_onnx(spec, model.state_dict(), opset).SerializeToString())
