"""model.onnx and model_stream.onnx, written op by op from the weights and the family.

    model = build_onnx(spec, model.state_dict())            # input -> output
    stream = build_stream_onnx(spec, model.state_dict())    # input, lengths, states -> output, states

Why not torch.onnx.export (measured on torch 2.13): `dynamo=True` specializes `seq` to the
example length (the loop and nn.RNN/GRU/LSTM are unrolled while tracing), the legacy
exporter and `jit.trace` unroll the cell loop behind a symbolic-looking `seq` axis, and the
legacy exporter's native-op graphs are not portable (tract refuses its 2-layer LSTM: the
initial state it bakes clashes with a symbolic batch; tract computes tanh for its ReLU RNN
and the ONNX reference evaluator refuses it). So the graph is written here, from the same
weights, in forms chosen per family by measurement (see pipeline/families/), and proved
like any export: the self-check and `verify` run it at lengths other than any example.

Both graphs, for every family, layer count and direction:

  If(batch x H <= family.native_max_elements)       (absent when the family has one form)
    then: the standard RNN / GRU / LSTM operator per layer, weights reordered to ONNX's gate
          order, initial states explicit (tract needs them with a symbolic batch), no
          `sequence_lens` (OpenVINO ignores it, tract refuses a non-constant one), layout 0
          (OpenVINO ignores layout=1 and onnxruntime refuses it); fastest at small batch.
    else: feature-major Scan per layer and direction: one 2-D Transpose of the input, the
          input projection of every step hoisted into one MatMul (bias folded in by a ones
          row), then a Scan whose body is the family's step (Gemm + activations) on states
          kept as (H, batch); a backward direction scans the time-reversed input.
  model.onnx: Gemm head on the last step's top-layer output.
  model_stream.onnx: each layer's states at each row's own last valid step, gathered from
          the per-step outputs (GatherElements at lengths - 1), and the head on the top one.
          No batch If here: the operator for one-state families (a streaming step pays no
          If), the Scan for relu, and for an LSTM an If on "every row full length" (the
          operator gives c only after its last step).

Only standard ONNX operators (If, RNN, GRU, LSTM, Scan, Gemm, MatMul, Sigmoid, Tanh, Relu,
Mul, Add, Sub, Split, GatherElements, shape ops), so any conformant runtime runs it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..families import head_weights
from ..families.graph import GraphBuilder, value_info
from ..specs import ModelSpec
from .recurrent_graph import IR_VERSIONS, RecurrentNet, if_else


def build_onnx(spec: ModelSpec, state: dict, opset: int = 18):
    """model.onnx: input (batch, seq, F) -> output (batch, O)."""
    net, x = RecurrentNet(spec, state), spec.input_name
    H, D = spec.hidden_size, spec.directions

    def native(b):
        y, finals = net.native(b, x)[-1]
        if D == 1:
            return [b.op("Squeeze", [finals[0], b.ints(0)])]              # (B, H)
        last = _last_step(b, y, x)                                       # (2, B, H)
        return [b.op("Reshape", [b.op("Transpose", [last], perm=[1, 0, 2]),
                                 b.ints(-1, 2 * H)])]                     # (B, 2H)

    def scan(b):
        top = net.scan(b, x, emit_top=() if D == 1 else (0,))[-1]
        h = top[0][0][0]                                                 # forward final (H, B)
        if D == 2:   # the backward direction's output at the last step: its first step
            back = _last_step(b, top[1][1][0], x)                        # (H, B)
            h = b.op("Concat", [h, back], axis=0)                        # (2H, B)
        return [b.op("Transpose", [h], perm=[1, 0])]                     # (B, D*H)

    b = GraphBuilder()
    (features,) = net.choose(b, x, native, scan)
    w, bias = head_weights(spec, state)
    b.op("Gemm", [features, b.const(w), b.const(bias)], [spec.output_name], transB=1)
    return b.model([value_info(x, list(spec.input.shape))],
                   [value_info(spec.output_name, list(spec.output.shape))],
                   opset=opset, ir_version=IR_VERSIONS[opset])


def build_stream_onnx(spec: ModelSpec, state: dict, opset: int = 18):
    """model_stream.onnx: (input, lengths, *states) -> (output, *states); see stream.py."""
    net = RecurrentNet(spec, state)
    L = spec.num_layers
    ins = [t.name for t in spec.stream_inputs[2:]]          # h_in (+ c_in), (B, [L,] H)
    b = GraphBuilder()
    states, _ = stream_states(b, net, spec.input_name, spec.lengths_name, ins)
    top = states[0] if L == 1 else b.op("Gather", [states[0], b.const(L - 1, "k", np.int64)],
                                         axis=1)
    w, bias = head_weights(spec, state)
    b.op("Gemm", [top, b.const(w), b.const(bias)], [spec.output_name], transB=1)
    outputs = [b.op("Identity", [s], [name]) for s, name in
               zip(states, [t.name for t in spec.stream_outputs[1:]])]
    return b.model([value_info(t.name, list(t.shape), t.dtype) for t in spec.stream_inputs],
                   [value_info(spec.output_name, list(spec.output.shape)),
                    *(value_info(o, list(t.shape)) for o, t in
                      zip(outputs, spec.stream_outputs[1:]))],
                   opset=opset, ir_version=IR_VERSIONS[opset])


def stream_states(b: GraphBuilder, net: RecurrentNet, x: str, lengths: str, ins: list[str],
                  steps: bool = False, full: bool | None = None
                  ) -> tuple[list[str], str | None]:
    """The recurrent layers of `net` from the states named `ins` ((B, [L,] H) each) over
    each row's first `lengths` steps: (each state after the row's last valid step, and
    with `steps` the top layer's h at every step (B, S, H), else None). `full`: the
    caller's own If already knows whether every row is full length (an LSTM's form)."""
    fam, H, L = net.fam, net.H, net.spec.num_layers

    def layer_state(b, name, k, layout):
        s = name if L == 1 else b.op("Gather", [name, b.const(k, "k", np.int64)], axis=1)
        return b.op("Unsqueeze", [s, b.ints(0)]) if layout == "native" else \
            b.op("Transpose", [s], perm=[1, 0])                           # (1, B, H) | (H, B)

    def index(b, rows, minus_shape):   # lengths - 1 broadcast over H: one Add with -1s
        return b.op("Add", [b.op("Reshape", [lengths, b.ints(*rows)]),
                            b.const(-np.ones(minus_shape, np.int64), "minus1", np.int64)])

    def native(b):
        init = [[layer_state(b, n, k, "native") for n in ins] for k in range(L)]
        res, idx, outs = net.native(b, x, init), None, []
        for y, finals in res:
            if fam.states == 1:     # h at each row's last step, gathered from every step's h
                idx = idx or index(b, (1, 1, -1, 1), (H,))               # (1, 1, B, H)
                outs.append([b.op("Reshape", [b.op("GatherElements", [y, idx], axis=0),
                                              b.ints(-1, H)])])
            else:                   # every row is full length in this branch (below)
                outs.append([b.op("Squeeze", [f, b.ints(0)]) for f in finals])
        top = [b.op("Reshape", [b.op("Transpose", [res[-1][0]], perm=[2, 0, 1, 3]),
                                b.ints(0, 0, -1)])] if steps else []       # (B, S, H)
        return _stack_layers(b, outs, L) + top

    def scan(b):
        init = [[layer_state(b, n, k, "scan") for n in ins] for k in range(L)]
        every = tuple(range(fam.states))      # each layer's h (and c) at every step
        res = net.scan(b, x, init, emit_top=every, emit_lower=every)
        idx = index(b, (1, 1, -1), (H, 1))                               # (1, H, B)
        outs = []
        for per_dir in res:
            per_step = per_dir[0][1]                                     # {state: (S, H, B)}
            gathered = [b.op("GatherElements", [per_step[i], idx], axis=0) for i in every]
            outs.append([b.op("Transpose", [b.op("Squeeze", [g, b.ints(0)])], perm=[1, 0])
                         for g in gathered])                             # (B, H) each
        top = [b.op("Transpose", [res[-1][0][1][0]], perm=[2, 0, 1])] if steps else []
        return _stack_layers(b, outs, L) + top

    # Which form: where the family has no portable operator, the Scan; where its state is
    # h alone, the operator (every step's h is in its Y; as the seeds' stream graphs, with no
    # If, whose ~2 us would double a streaming step, measured); an LSTM's operator outputs c
    # only after the last step, so it runs when every row is full length (a streaming
    # step, a chunk) and the Scan, which emits c per step, when rows are ragged.
    if not fam.native_op:
        states = scan(b)
    elif fam.states == 1:
        states = native(b)
    elif full is not None:
        states = native(b) if full else scan(b)
    else:
        shortest = b.op("ReduceMin", [lengths], keepdims=1)
        full = b.op("Equal", [shortest, b.op("Shape", [x], start=1, end=2)])
        states = if_else(b, full, native, scan)
    return (states[:-1], states[-1]) if steps else (states, None)


def _last_step(b, y: str, x: str) -> str:
    """y[seq - 1] along axis 0, the axis dropped. A Gather at an index computed from the
    input's shape: tract cannot run a Slice to a huge constant end, nor one from a computed
    start inside an If branch."""
    seq = b.op("Shape", [x], start=1, end=2)
    last = b.op("Squeeze", [b.op("Sub", [seq, b.ints(1)]), b.ints(0)])   # a scalar index
    return b.op("Gather", [y, last], axis=0)


def _stack_layers(b, per_layer: list[list[str]], layers: int) -> list[str]:
    """[layer][state] (B, H) -> per state (B, H) for one layer, (B, L, H) for more."""
    if layers == 1:
        return per_layer[0]
    return [b.op("Concat", [b.op("Unsqueeze", [layer[i], b.ints(1)]) for layer in per_layer],
                 axis=1) for i in range(len(per_layer[0]))]


def export_onnx(model, spec: ModelSpec, path: Path, opset: int) -> None:
    """Write model.onnx for `model` (the canonical eager module) to `path`; a chain's is
    chain_graph.py's."""
    if spec.layers:
        from .chain_graph import export_chain_onnx
        return export_chain_onnx(model, spec, path, opset)
    Path(path).write_bytes(build_onnx(spec, model.state_dict(), opset).SerializeToString())


def export_stream_onnx(model, spec: ModelSpec, path: Path, opset: int) -> None:
    if spec.layers:
        from .chain_graph import export_chain_stream_onnx
        return export_chain_stream_onnx(model, spec, path, opset)
    Path(path).write_bytes(build_stream_onnx(spec, model.state_dict(), opset).SerializeToString())
