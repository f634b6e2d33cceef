"""The recurrent layers of a spec written into a GraphBuilder, in both of its forms, and the
small pieces that model.onnx, model_stream.onnx (onnx_graph.py) and a chain's graphs
(chain_graph.py) share.

    net = RecurrentNet(spec, model.state_dict())
    per_layer = net.native(b, x)            # the standard RNN / GRU / LSTM operator per layer
    per_layer = net.scan(b, x)              # a feature-major Scan per layer and direction
    outs = net.choose(b, x, native, scan)   # both, behind an If on batch x H

The forms and why each is written as it is: onnx_graph.py's docstring.
"""
from __future__ import annotations

import numpy as np

from ..families import family, layer_weights
from ..families.graph import GraphBuilder, value_info
from ..specs import ModelSpec

IR_VERSIONS = {18: 8, 19: 9, 20: 9, 21: 10}     # the IR each opset came with


def fill(value: float):
    from onnx import helper
    return helper.make_tensor("value", 1, [1], [value])     # float32 ConstantOfShape value


def fill_int(value: int):
    from onnx import helper
    return helper.make_tensor("value", 7, [1], [value])     # int64


class RecurrentNet:
    """The recurrent layers of one spec, written into a GraphBuilder in either form."""

    def __init__(self, spec: ModelSpec, state: dict):
        self.spec, self.fam = spec, family(spec)
        self.layers = layer_weights(spec, state)
        self.H, self.D = spec.hidden_size, spec.directions

    def native(self, b: GraphBuilder, x: str, init=None):
        """Per layer: (Y (S, D, B, H), [final state (D, B, H)...]). init: per layer, per
        state, (D, B, H) names; None: zeros."""
        fam, H, D = self.fam, self.H, self.D
        xs = b.op("Transpose", [x], perm=[1, 0, 2])                      # (S, B, F)
        if init is None:
            batch = b.op("Shape", [x], start=0, end=1)
            zeros = b.op("ConstantOfShape", [b.op("Concat", [b.ints(D), batch, b.ints(H)],
                                                  axis=0)], value=fill(0.0))
            init = [[zeros] * fam.states for _ in self.layers]
        direction = {"direction": "bidirectional"} if D == 2 else {}
        out = []
        for k, dirs in enumerate(self.layers):
            ws = [w.gates(fam.onnx_order) for w in dirs]
            w = b.const(np.stack([w.w_ih for w in ws]))                   # (D, G*H, F_in)
            r = b.const(np.stack([w.w_hh for w in ws]))                   # (D, G*H, H)
            bias = b.const(np.stack([np.concatenate([w.b_ih, w.b_hh]) for w in ws]))
            y, *finals = b.op(fam.native_op, [xs, w, r, bias, "", *init[k]],
                              1 + fam.states, **direction, **fam.native_attrs(H))
            out.append((y, finals))
            xs = b.op("Squeeze", [y, b.ints(1)]) if D == 1 else \
                b.op("Reshape", [b.op("Transpose", [y], perm=[0, 2, 1, 3]), b.ints(0, 0, -1)])
        return out

    def scan(self, b: GraphBuilder, x: str, init=None, emit_top: tuple[int, ...] = (),
             emit_lower: tuple[int, ...] = (0,), lengths: str | None = None):
        """Per layer, per direction: (final states [(H, B)...], {state index: (S, H, B) steps}).
        Layers below the top emit the states in `emit_lower` per step (h at least: the next
        layer's input), the top layer those in `emit_top`. init: per layer, per state, (H, B)
        names; None: zeros. `lengths` (B,): a packed layer, whose backward direction reverses
        each row's first lengths steps only (it starts at the row's own last valid step; its
        final states are then not the rows' own, read its steps)."""
        fam, H, spec = self.fam, self.H, self.spec
        batch = b.op("Shape", [x], start=0, end=1)
        seq = b.op("Shape", [x], start=1, end=2)
        # A ones row per step carries the bias through the projection (no Add over (S, G*H,
        # B)). (B, S, F + 1) -> (B, S*(F+1)) -> (S*(F+1), B) -> (S, F + 1, B): one 2-D
        # transpose, batch-wide rows.
        ones_bs = b.op("ConstantOfShape", [b.op("Concat", [batch, seq, b.ints(1)], axis=0)],
                       value=fill(1.0))                                  # (B, S, 1)
        flat = b.op("Reshape", [b.op("Concat", [x, ones_bs], axis=2),
                                b.op("Concat", [batch, b.ints(-1)], axis=0)])
        xa = b.op("Reshape", [b.op("Transpose", [flat], perm=[1, 0]),
                              b.op("Concat", [seq, b.ints(spec.input_size + 1), batch], axis=0)])
        if init is None:
            zeros = b.op("ConstantOfShape", [b.op("Concat", [b.ints(H), batch], axis=0)],
                         value=fill(0.0))
            init = [[zeros] * fam.states for _ in self.layers]
        rev, rows = [], []       # the reversal's index (scan's, or per row), made once

        def reverse(b):      # seq-1, ..., 0: the Gather index that reverses time (axis 0);
            if not rev:      # a reversed exclusive CumSum of ones (tract cannot type Range)
                ones_s = b.op("ConstantOfShape", [seq], value=fill_int(1))
                rev.append(b.op("CumSum", [ones_s, b.const(0, "axis", np.int64)], exclusive=1,
                                reverse=1))
            return rev[0]

        out = []
        for k, dirs in enumerate(self.layers):
            emit = emit_top if k == len(self.layers) - 1 else emit_lower
            per_dir = []
            for d, w in enumerate(dirs):
                w_aug, consts = fam.scan_weights(w)
                # the backward direction scans the time-reversed sequence and reverses its
                # per-step outputs back (the reference evaluator has no scan directions)
                flip = (lambda y: b.op("Gather", [y, reverse(b)], axis=0)) if lengths is None \
                    else (lambda y: flip_rows(b, y, seq, lengths, rows))
                xd = xa if d == 0 else flip(xa)
                p = b.op("MatMul", [b.const(w_aug), xd])                  # (S, G*H, B)
                finals, steps = self._scan_one(b, p, init[k], consts, emit)
                if d == 1:
                    steps = {i: flip(y) for i, y in steps.items()}
                per_dir.append((finals, steps))
            out.append(per_dir)
            if k < len(self.layers) - 1:     # the next layer's input: h of every direction
                xf = per_dir[0][1][0] if len(dirs) == 1 else \
                    b.op("Concat", [per_dir[0][1][0], per_dir[1][1][0]], axis=1)   # (S, D*H, B)
                # its ones row by Pad: tract fails to declutter MatMul(W, Concat(xf, ones))
                xa = b.op("Pad", [xf, b.ints(0, 0, 0, 0, 1, 0), b.const(1.0, "one")])
        return out

    def _scan_one(self, b, p, init, consts, emit):
        fam, H = self.fam, self.H
        body = b.sub()
        states = [body.fresh("state") for _ in range(fam.states)]
        p_t = body.fresh("p_t")
        names = {k: b.const(v) for k, v in consts.items()}
        new = fam.scan_step(body, p_t, states, names, H)
        steps = [body.op("Identity", [new[i]]) for i in emit]           # per-step outputs
        graph = body.graph("step", [value_info(n) for n in [*states, p_t]],
                           [value_info(n) for n in [*new, *steps]])
        res = b.ops("Scan", [*init, p], fam.states + len(emit), body=graph, num_scan_inputs=1)
        return res[:fam.states], dict(zip(emit, res[fam.states:]))

    # the two forms side by side, behind an If when the family has both -------------------
    def choose(self, b: GraphBuilder, x: str, native, scan) -> list[str]:
        """model.onnx: the outputs of native(sub) while batch x H is small, else of scan(sub);
        only the Scan when the family has no portable operator."""
        limit = self.fam.native_batch_limit(self.H)
        if limit < 1:
            return scan(b)
        batch = b.op("Shape", [x], start=0, end=1)
        return if_else(b, b.op("LessOrEqual", [batch, b.ints(limit)]), native, scan)


def if_else(b: GraphBuilder, cond: str, then, otherwise) -> list[str]:
    """If(cond) then(sub) else otherwise(sub); cond a one-element bool tensor."""
    branches = []
    for form in (then, otherwise):
        sub = b.sub()
        outs = form(sub)
        branches.append(sub.graph(f"{form.__name__}_branch", [], [value_info(o) for o in outs]))
    return b.ops("If", [b.op("Squeeze", [cond, b.ints(0)])], len(outs),
                 then_branch=branches[0], else_branch=branches[1])


def flip_rows(b, y: str, seq: str, lengths: str, cache: list, batch_axis: int = 2) -> str:
    """y (S, W, B), or (S, B, W) with batch_axis 1, with each row's first lengths steps in
    reverse order, the rest kept (ReverseSequence, written as GatherElements, which every
    runtime here computes alike; an involution, so it also flips back)."""
    if not cache:
        t = b.op("CumSum", [b.op("ConstantOfShape", [seq], value=fill_int(1)),
                            b.const(0, "axis", np.int64)], exclusive=1)     # (S,) 0..S-1
        t = b.op("Unsqueeze", [t, b.ints(1)])                                # (S, 1)
        n = b.op("Unsqueeze", [lengths, b.ints(0)])                          # (1, B)
        back = b.op("Sub", [b.op("Sub", [n, b.ints(1)]), t])                # n - 1 - t
        cache.append(b.op("Where", [b.op("Less", [t, n]), back, t]))         # (S, B)
    idx = b.op("Unsqueeze", [cache[0], b.ints(3 - batch_axis)])      # (S, 1, B) | (S, B, 1)
    return b.op("GatherElements", [y, b.op("Expand", [idx, b.op("Shape", [y])])], axis=0)
