"""Reading a traced forward's fx graph, node by node, into a chain of layers (see
trace.py for what is read and refused).

    traced = Reader(root, originals).read(graph)     # Traced; ImportRefused, located

Each node's value is a `Value` (what it holds and where the chain stood when it was made);
a layer is appended only when it consumes the value at the chain's end, so a value read
again after later layers (a skip or residual connection) is refused where it happens.
"""
from __future__ import annotations

import operator

from ..layers import Activation, Dropout, Embedding, Readout, Recurrent
from .packing import Packing
from .statedict import ImportRefused
from .trace import (ALPHA, STACKS, Traced, Value, _index_words, _is_last_step, _name,
                    leaf_layer, where)


class Reader(Packing):
    def __init__(self, root, originals):
        import torch
        from torch.nn import functional as F
        self.root, self.torch, self.originals = root, torch, originals
        self.layers, self.prefixes, self.kind, self.notes = [], {}, "features", []
        self.sorted_lengths = False
        self.padded = None           # the pad_packed_sequence node, once one unpacked a layer
        self.fns = {F.relu: "relu", torch.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh",
                    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu",
                    F.leaky_relu: "leaky_relu", F.elu: "elu", F.silu: "silu",
                    F.softmax: "softmax", torch.softmax: "softmax", F.log_softmax:
                    "log_softmax", torch.log_softmax: "log_softmax"}

    def refuse(self, node, what: str):
        raise ImportRefused(f"--module: {what}{where(node)}; the chain cannot express it "
                            "(see README: Bring your own model)")

    def append(self, node, v: Value, layer, prefix: str | None = None, width=None) -> Value:
        if v.pos != len(self.layers):
            self.refuse(node, f"{_name(node)} reads a value again after later layers (a skip "
                              "or residual connection)")
        if v.what not in ("seq", "row", "input"):
            self.refuse(node, f"{_name(node)} on a {v.what} value")
        if v.packed:
            self.refuse(node, f"{_name(node)} on a packed sequence; read h_n after the "
                              "recurrent layers")
        if prefix is not None:
            self.prefixes[len(self.layers)] = prefix
        self.layers.append(layer)
        return Value("row" if v.what == "row" or layer.kind == "readout" else "seq",
                     len(self.layers), width if width is not None else v.width, v.directions)

    def read(self, graph):
        vals = self.vals = {}
        for node in graph.nodes:
            if node.op == "placeholder":
                if len(vals) >= 2:
                    self.refuse(node, f"a third forward argument {node.name!r}")
                vals[node] = Value("input" if not vals else "lengths")
            elif node.op == "output":
                out = node.args[0]
                if isinstance(out, (tuple, list, dict)):
                    parts = [p for p in (out.values() if isinstance(out, dict) else out)
                             if hasattr(p, "op")]     # the output node has no source line
                    self.refuse(parts[0] if parts else node, f"forward returns tuple of "
                                f"{len(out)} values (the pipeline exports one output tensor)")
                v = self.settle(node, vals[out])
                if v.what not in ("seq", "row") or v.packed:
                    self.refuse(node, f"forward returns a {'packed' if v.packed else v.what} "
                                      "value")
                if v.pos != len(self.layers):
                    self.refuse(node, "forward returns a value from before its last layers")
            elif node.op == "call_module":
                vals[node] = self.module(node, vals)
            elif node.op in ("call_function", "call_method"):
                vals[node] = self.function(node, vals)
            else:
                self.refuse(node, f"{node.op} {node.target}")
        return Traced(self.layers, self.kind, self.prefixes, self.notes, self.sorted_lengths)

    def settle(self, node, v: Value) -> Value:
        """A pending h_n[-1] becomes a final-state readout once something reads it."""
        if v.what == "h_item":
            if v.item != -1:
                self.refuse(node, f"h_n[{v.item}] alone (only h_n[-1], or cat(h_n[-2], "
                                  "h_n[-1]) of a bidirectional layer)")
            layer = self.layers[-1]
            self._not_padding(node, "h_n[-1]")
            return self.append(node, Value("seq", v.pos, v.width, v.directions),
                               Readout("final_state", v.width, v.directions),
                               width=layer.hidden)
        return v

    def arg(self, node, vals, i=0):
        return self.settle(node, vals[node.args[i]])

    # --- modules -------------------------------------------------------------------------
    def module(self, node, vals):
        from torch import nn
        m = self.root.get_submodule(node.target)
        name = type(m).__name__
        v = self.arg(node, vals)
        if isinstance(m, nn.Embedding):
            if v.what != "input" or self.layers:
                self.refuse(node, f"nn.Embedding ({node.target}) after other layers")
            if m.max_norm is not None:
                self.refuse(node, f"nn.Embedding ({node.target}) with max_norm")
            self.kind = "tokens"
            return self.append(node, Value("seq"), Embedding(m.num_embeddings, m.embedding_dim,
                                                             m.padding_idx), node.target,
                               m.embedding_dim)
        if v.what == "input":
            v = Value("seq")
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
            self.refuse(node, f"nn.LayerNorm ({node.target}) over several axes")
        layer = leaf_layer(m)
        if layer is not None:
            if layer.kind in ("linear", "layer_norm"):
                self._width(node, v, layer.inputs if layer.kind == "linear" else layer.size)
            if getattr(layer, "fn", "").endswith("softmax"):
                self._last_axis(node, v, m.dim)
            weights = node.target if layer.kind in ("linear", "layer_norm") else None
            return self.append(node, v, layer, weights, layer.out_width(v.width))
        if name in STACKS and isinstance(m, nn.RNNBase):
            return self.recurrent(node, vals, v, m, name)
        self.refuse(node, f"{name} ({node.target}) is not a layer kind the pipeline translates")

    def recurrent(self, node, vals, v, m, name):
        if len(node.args) > 1 or node.kwargs:
            self.refuse(node, f"nn.{name} ({node.target}) called with an initial state; the "
                              "pipeline starts from zeros (a stream carries state itself)")
        if not m.batch_first:
            self.refuse(node, f"nn.{name} ({node.target}) with batch_first=False")
        if getattr(m, "proj_size", 0):
            self.refuse(node, f"nn.LSTM ({node.target}) with proj_size")
        cell = STACKS[name] or ("rnn_relu" if m.nonlinearity == "relu" else "rnn_tanh")
        self._width(node, v, m.input_size)
        layer = Recurrent(cell, "stack", m.input_size, m.hidden_size, m.num_layers,
                          m.bidirectional, packed=v.packed)
        out = self.append(node, Value("seq", v.pos, v.width), layer, node.target)
        return Value("rnn", out.pos, m.hidden_size * layer.directions, layer.directions,
                     v.packed)

    def _width(self, node, v, width):
        if v.width is not None and v.width != width:
            self.refuse(node, f"{_name(node)} takes {width} features, gets {v.width}")

    def _last_axis(self, node, v, dim):
        if dim not in (-1, 2 if v.what == "seq" else 1):
            self.refuse(node, f"{_name(node)} over axis {dim}; the chain's softmax is over the "
                              "last axis")

    # --- functions and methods -----------------------------------------------------------
    def function(self, node, vals):
        torch, target = self.torch, node.target
        args = node.args
        v = vals.get(args[0]) if args and hasattr(args[0], "op") else None
        if target is operator.getitem:
            return self.getitem(node, v, args[1])
        got = self.index_math(node, v, self.vals)       # packing.py: each row's last step
        if got is not None:
            return got
        if target is getattr and args[1] == "values" and v is not None and v.what == "maxed":
            return self.readout(node, Value("seq", v.pos, v.width, v.directions), "max")
        if target is self.originals["pack_padded_sequence"]:
            return self.pack(node, vals)
        if target is self.originals["pad_packed_sequence"]:
            return self.unpack(node, vals)
        if v is not None and v.what == "lengths" and target in ("cpu", "to", "long", "int"):
            return v
        if target in ("contiguous",) and v is not None:
            return v
        if target in ("size", "dim") or target is getattr and args[1] == "shape":
            return Value("size")              # sizes: only a state built from them reads them
        if target in (torch.zeros, torch.ones, torch.randn, torch.full, "new_zeros"):
            return Value("made tensor")
        if target in (torch.cat, torch.concat):
            return self.cat(node, vals)
        v = self.settle(node, v) if v is not None else None
        if v is None or v.what in ("size", "made tensor"):
            self.refuse(node, f"{_name(node)} not on the model's input")
        fn = self.fns.get(target) or (target if isinstance(target, str) and target in
                                      ("relu", "tanh", "sigmoid", "softmax", "log_softmax")
                                      else None)
        if fn:
            return self.activation(node, v, fn)
        if target in (torch.nn.functional.dropout,) or target == "dropout":
            p = args[1] if len(args) > 1 else node.kwargs.get("p", 0.5)
            return self.append(node, v, Dropout(float(p)))
        if target in ("mean", torch.mean, "amax", torch.amax, "max", torch.max):
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim")
            if dim not in (1, -2) or v.what != "seq" or node.kwargs.get("keepdim"):
                self.refuse(node, f"{_name(node)} over axis {dim} (readouts reduce over time, "
                                  "axis 1, without keepdim)")
            if target in ("max", torch.max):
                return Value("maxed", v.pos, v.width, v.directions)
            return self.readout(node, v, "mean" if target in ("mean", torch.mean) else "max")
        if target in ("squeeze",) and v.what == "state":
            return self.getitem(node, v, -1) if self._one_state() else \
                self.refuse(node, "h_n.squeeze of several layers or directions")
        if target in (operator.add, operator.iadd, torch.add, "add"):
            self.refuse(node, "a residual add (x + ...)")
        self.refuse(node, f"{_name(node)}")

    def activation(self, node, v, fn):
        kw = dict(node.kwargs)
        if fn in ("softmax", "log_softmax"):
            dim = node.args[1] if len(node.args) > 1 else kw.get("dim")
            self._last_axis(node, v, dim)
        alpha = None
        if fn == "gelu" and kw.get("approximate", "none") == "tanh":
            fn = "gelu_tanh"
        if fn in ALPHA:
            alpha = node.args[1] if len(node.args) > 1 else kw.get(ALPHA[fn])
            alpha = float(alpha) if alpha is not None else None
        return self.append(node, v, Activation(fn, alpha))

    def readout(self, node, v, how):
        if v.pos != len(self.layers) or not self.layers:
            self.refuse(node, f"{_name(node)} reads a value again after later layers")
        self._not_padding(node, _name(node) if how != "last_step" else "out[:, -1]")
        return self.append(node, v, Readout(how, v.width, v.directions))

    def _one_state(self):
        layer = self.layers[-1]
        return layer.layers * layer.directions == 1

    def getitem(self, node, v, index):
        if v is None:
            self.refuse(node, "indexing a value that is not the model's")
        if v.what == "size":
            return Value("size", item=index) if v.item is None else v
        if v.what == "rnn":
            if index == 0:
                return Value("seq", v.pos, v.width, v.directions, v.packed)
            lstm = self.layers[-1].cell == "lstm"
            return Value("cstate" if lstm else "state", v.pos, v.width, v.directions)
        if v.what == "cstate":
            if index != 0:
                self.refuse(node, "the LSTM's cell state c_n as an output")
            return Value("state", v.pos, v.width, v.directions)
        if v.what == "state":
            layer = self.layers[-1]
            count = layer.layers * layer.directions
            if not isinstance(index, int) or not -count <= index < count:
                self.refuse(node, f"h_n[{index!r}]")
            return Value("h_item", v.pos, v.width, v.directions,
                         item=index - count if index >= 0 else index)
        if v.what == "padded":
            return Value("seq", v.pos, v.width, v.directions) if index == 0 else \
                Value("lengths")                     # the forward's, in its order
        if v.what == "maxed" and index == 0:
            return self.readout(node, Value("seq", v.pos, v.width, v.directions), "max")
        if v.what == "seq" and _is_last_step(index):
            return self.readout(node, v, "last_step")
        got = self.index_rows(node, v, index, self.vals)     # out[arange(B), lengths - 1]
        if got is not None:
            return got
        self.refuse(node, f"indexing [{_index_words(index)}] of a {v.what} value (the chain "
                          "reads out[:, -1] and h_n[-1])")

    def cat(self, node, vals):
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        items = [vals.get(p) for p in parts] if isinstance(parts, (list, tuple)) else []
        if len(items) == 2 and all(i is not None and i.what == "h_item" for i in items) and \
                [i.item for i in items] == [-2, -1] and dim in (1, -1) and \
                items[0].directions == 2:
            v = items[1]
            self._not_padding(node, "torch.cat((h_n[-2], h_n[-1]))")
            return self.append(node, Value("seq", v.pos, v.width, v.directions),
                               Readout("final_state_both", v.width, 2))
        self.refuse(node, "torch.cat of other values than (h_n[-2], h_n[-1]) of a "
                          "bidirectional layer")
