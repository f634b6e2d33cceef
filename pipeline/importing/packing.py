"""The packing calls of a forward `(x, lengths)`, read into the chain (a mixin of
reader.py's Reader, which holds `layers`, `notes`, `refuse`...).

  pack_padded_sequence(x, lengths[.cpu()], batch_first=True, enforce_sorted=...)
        -> the recurrent layers after it run on each row's own length (Recurrent.packed)
  pad_packed_sequence(out, batch_first=True[, total_length=x.size(1)])
        -> every step of the packed layer, zeros past each row's length: per-step layers
           may follow (the artifacts mask those steps, export/chain_graph.py); out[:, -1],
           .mean(1), .max(1) may not (they would read the zeros of shorter rows)
  out[torch.arange(out.size(0)), lengths - 1]      (or len(lengths), out.shape[0]; lengths
  out.gather(1, (lengths - 1).view(-1, 1, 1)        the forward's or pad_packed_sequence's)
             .expand(-1, 1, out.size(2))).squeeze(1)
        -> each row's last valid step: Readout("last_step"), which the artifacts read at
           lengths - 1 (= h_n[-1] for a one-way top layer; for a bidirectional one, the
           forward's final state beside the backward direction's output at that step,
           which has seen only that step, as torch gives it)

Contract without total_length: torch gives max(lengths) steps, the artifacts as many as
the input has; the first max(lengths) are the user's (the rest: what the layers after it
make of zeros, as total_length=x.size(1) would give).
"""
from __future__ import annotations

import operator

from ..layers import Readout
from .trace import Value, _name, where

# methods that keep `lengths - 1` an index of each row's last valid step
INDEX_SHAPING = ("view", "reshape", "unsqueeze", "expand", "to", "long", "cpu", "int",
                 "contiguous")


class Packing:
    def pack(self, node, vals):
        args, kw = node.args, node.kwargs
        v = vals[args[0]]
        lengths = vals.get(args[1] if len(args) > 1 else kw.get("lengths"))
        if v.what not in ("input", "seq") or v.pos != len(self.layers) or lengths is None \
                or lengths.what != "lengths":
            self.refuse(node, "pack_padded_sequence of other than the model's sequence and "
                              "forward's lengths")
        if not (args[2] if len(args) > 2 else kw.get("batch_first", False)):
            self.refuse(node, "pack_padded_sequence with batch_first=False")
        if (args[3] if len(args) > 3 else kw.get("enforce_sorted", True)):
            self.notes.append("enforce_sorted=True: your forward takes lengths sorted longest "
                              "first; the artifacts take them in any order")
            self.sorted_lengths = True
        return Value("seq", v.pos, v.width, 1, packed=True)

    def unpack(self, node, vals):
        """pad_packed_sequence(out, batch_first=True[, total_length=x.size(1)]) of the last
        recurrent layer's packed output: its every step, zeros past each row's length (the
        artifacts mask them: chain_graph.py). Without total_length torch gives max(lengths)
        steps; the artifacts always give seq, the first max(lengths) of them the user's."""
        args, kw = node.args, node.kwargs
        v = vals.get(args[0] if args else kw.get("sequence"))
        if v is None or v.what != "seq" or not v.packed or v.pos != len(self.layers):
            self.refuse(node, "pad_packed_sequence of other than the last recurrent layer's "
                              "packed output")
        if not (args[1] if len(args) > 1 else kw.get("batch_first", False)):
            self.refuse(node, "pad_packed_sequence with batch_first=False")
        fill = args[2] if len(args) > 2 else kw.get("padding_value", 0.0)
        if fill != 0:
            self.refuse(node, f"pad_packed_sequence with padding_value={fill!r} (zeros only)")
        total = args[3] if len(args) > 3 else kw.get("total_length")
        if total is not None and not (hasattr(total, "op") and vals[total].what == "size"):
            self.refuse(node, f"pad_packed_sequence(total_length={total!r}); give total_length="
                              "x.size(1) or none (the artifacts give as many steps as the input)")
        if total is None:                    # dropped if a row's last valid step is read
            self.notes.append("pad_packed_sequence without total_length gives max(lengths) "
                              "steps; the artifacts give as many as the input has (the first "
                              "max(lengths) are your forward's)")
        self.padded = node
        return Value("padded", v.pos, v.width, v.directions)

    def _not_padding(self, node, what: str):
        """A readout after pad_packed_sequence reads the zeros of every shorter row (and of
        a seq that depends on total_length); the chain reads each row at its own length."""
        last = self.layers[-1] if self.layers else None
        of_packed = last is not None and last.kind == "recurrent" and last.packed and \
            what.startswith(("h_n", "torch.cat"))
        if self.padded is not None and not of_packed:
            at = where(self.padded).replace(" at ", ", ")
            self.refuse(node, f"{what} of pad_packed_sequence's output{at} reads the zeros of "
                              "shorter rows (read h_n[-1] of the packed layer, or each row's "
                              "last valid step: out[torch.arange(B), lengths - 1])")

    def index_math(self, node, v, vals):
        """The values that read each row's last valid step (sizes, torch.arange(batch),
        lengths - 1 and its reshaping, out.gather and its squeeze); None for other nodes."""
        torch, target, args, kw = self.torch, node.target, node.args, node.kwargs
        if target is len and v is not None:
            return Value("size", item=0)
        if target == "size" and v is not None:
            return Value("size", item=args[1] if len(args) > 1 else kw.get("dim"))
        if target is getattr and v is not None and args[1] in ("shape", "device", "dtype"):
            return Value("size", item=None) if args[1] == "shape" else Value("attr")
        if target is torch.arange:
            n = vals.get(args[0]) if len(args) == 1 and hasattr(args[0], "op") else None
            if n is None or n.what != "size" or n.item != 0:
                self.refuse(node, "torch.arange of other than the batch size (each row's "
                                  "index: torch.arange(out.size(0)))")
            return Value("rows")
        if v is None:
            return None
        if v.what == "lengths" and target in (operator.sub, "sub"):
            if args[1] != 1:
                self.refuse(node, f"lengths - {args[1]!r} (the chain reads each row's last "
                                  "valid step, lengths - 1)")
            return Value("last_index")
        if v.what == "last_index" and target in INDEX_SHAPING:
            return v
        if target in ("gather", torch.gather) and v.what == "seq":
            dim = args[1] if len(args) > 1 else kw.get("dim")
            index = vals.get(args[2] if len(args) > 2 else kw.get("index"))
            if dim not in (1, -2) or index is None or index.what != "last_index":
                self.refuse(node, f"{_name(node)} other than each row's last valid step "
                                  "(out.gather(1, (lengths - 1).view(-1, 1, 1).expand(...)))")
            return Value("gathered", v.pos, v.width, v.directions)
        if v.what == "gathered" and target == "squeeze" and \
                (args[1] if len(args) > 1 else kw.get("dim")) in (1, -2):
            return self.last_valid(node, Value("seq", v.pos, v.width, v.directions),
                                   "out.gather(1, lengths - 1)")
        return None

    def index_rows(self, node, v, index, vals):
        """out[torch.arange(B), lengths - 1(, :)] -> the last-valid-step readout, or None."""
        if v.what != "seq" or not isinstance(index, tuple) or len(index) not in (2, 3) or \
                (len(index) == 3 and index[2] != slice(None, None, None)):
            return None
        rows, last = (vals.get(i) if hasattr(i, "op") else None for i in index[:2])
        if rows is None or last is None or (rows.what, last.what) != ("rows", "last_index"):
            return None
        return self.last_valid(node, v, "out[torch.arange(B), lengths - 1]")

    def last_valid(self, node, v, what: str):
        """Each row's output at its last valid step: the artifacts' last-step readout reads
        every row at lengths - 1 where the chain takes lengths, i.e. has a packed layer."""
        if not any(getattr(layer, "packed", False) for layer in self.layers):
            self.refuse(node, f"{what} of a layer that is not packed (the artifacts take "
                              "lengths for pack_padded_sequence only)")
        self.notes = [n for n in self.notes if not n.startswith("pad_packed_sequence without")]
        return self.append(node, v, Readout("last_step", v.width, v.directions))
