"""The packing calls of a forward `(x, lengths)`, read into the chain (a mixin of
reader.py's Reader, which holds `layers`, `notes`, `refuse`...).

  pack_padded_sequence(x, lengths[.cpu()], batch_first=True, enforce_sorted=...)
        -> the recurrent layers after it run on each row's own length (Recurrent.packed)
  pad_packed_sequence(out, batch_first=True[, total_length=x.size(1)])
        -> every step of the packed layer, zeros past each row's length: per-step layers
           may follow (the artifacts mask those steps, export/chain_graph.py), a readout
           may not (it would read the zeros of shorter rows); read h_n[-1] instead.

Contract without total_length: torch gives max(lengths) steps, the artifacts as many as
the input has; the first max(lengths) are the user's (the rest: what the layers after it
make of zeros, as total_length=x.size(1) would give).
"""
from __future__ import annotations

from .trace import Value, where


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
        if total is None:
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
                              "shorter rows (read h_n[-1] of the packed layer)")
