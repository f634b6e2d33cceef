"""`import --module`: the chain of layers read from the user's forward with torch.fx.

    traced = read_chain(module)     # Traced(layers, kind, prefixes, ...); ImportRefused

torch.fx traces the forward with torch.nn's modules as leaves (nn.Sequential and the user's
own nested modules are traced through), and each node is read into the chain:

  modules   nn.Embedding (first), nn.Linear, nn.LayerNorm, nn.Dropout, activation modules
            (LEAVES), nn.RNN / nn.GRU / nn.LSTM (batch_first=True)
  functions F.relu, torch.tanh, .softmax(-1), ... (FUNCTIONS, METHODS), F.dropout
  readouts  out[:, -1], h_n[-1], h_n.squeeze(0) (one layer), torch.cat((h_n[-2], h_n[-1]),
            1), .mean(1), .max(1)[0] / .values, .amax(1); the (output, state) tuples;
            after pad_packed_sequence each row's last valid step, out[torch.arange(B),
            lengths - 1] or out.gather(1, (lengths - 1).view(-1, 1, 1).expand(...))
  packing   forward(x, lengths): pack_padded_sequence(x, lengths[.cpu()], batch_first=True,
            enforce_sorted=...) -> recurrent layers (one-way or bidirectional) -> h_n
            (read at each row's length), or pad_packed_sequence(batch_first=True[,
            total_length=x.size(1)]) -> per-step layers (packing.py)

Anything else is refused in one line naming it and its place in the user's source
(file:line): an unknown module (nn.MultiheadAttention, nn.Conv1d...), a residual add, a
value read again after later layers, a forward that branches on the data (fx's own
refusal, located), a forward returning several tensors. A cell stepped in a Python loop
(seed 000's form) cannot be traced (range over a traced size); `record_cell_loop` reads it
from the order in which the modules run instead, and the equivalence check decides.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from ..layers import Activation, Dropout, LayerNorm, Linear
from .statedict import ImportRefused

# torch.nn activation module -> (fn, how its alpha is read)
LEAVES = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "GELU": "gelu",
          "LeakyReLU": "leaky_relu", "ELU": "elu", "SiLU": "silu", "Softmax": "softmax",
          "LogSoftmax": "log_softmax"}
ALPHA = {"leaky_relu": "negative_slope", "elu": "alpha"}
STACKS = {"RNN": None, "GRU": "gru", "LSTM": "lstm"}
CELL_MODULES = {"RNNCell": None, "GRUCell": "gru", "LSTMCell": "lstm"}


@dataclass
class Traced:
    layers: list                 # the chain's layer dataclasses
    kind: str                    # input kind: features | tokens
    prefixes: dict               # chain index -> the user's module path (weights' prefix)
    notes: list
    sorted_lengths: bool = False  # the forward packs with enforce_sorted=True


@dataclass
class Value:
    """What a traced node holds: `what` is input, lengths, seq (B, S, W), row (B, W),
    rnn (a recurrent call's tuple), state (h_n), cstate ((h_n, c_n)), h_item (h_n[k]),
    padded (pad_packed_sequence's tuple), maxed (.max(1)'s tuple)."""
    what: str
    pos: int = 0                 # the chain's length when made: consumers must be at its end
    width: int | None = None
    directions: int = 1
    packed: bool = False
    item: int = 0


def where(node) -> str:
    """file:line of a traced node in the user's source ('' if fx recorded none)."""
    found = [f for f in re.findall(r'File "([^"]+)", line (\d+)', node.stack_trace or "")
             if "/torch/" not in f[0] and f[0] != __file__]     # not _wrapped's own line
    return f" at {found[-1][0].rsplit('/', 1)[-1]}:{found[-1][1]}" if found else ""


def _wrapped(orig):
    """`orig` recorded as one call_function node when called on traced values."""
    import functools

    from torch import fx

    @functools.wraps(orig)
    def call(*args, **kwargs):
        proxy = next((a for a in (*args, *kwargs.values()) if isinstance(a, fx.Proxy)), None)
        if proxy is None:
            return orig(*args, **kwargs)
        return proxy.tracer.create_proxy("call_function", orig, args, kwargs)
    return call


@contextlib.contextmanager
def _packing_wrapped(root):
    """pack_padded_sequence / pad_packed_sequence as fx leaves while tracing `root`
    (patched in torch.nn.utils.rnn and in the globals of every module's forward)."""
    from torch.nn.utils import rnn
    import builtins
    originals = {n: getattr(rnn, n) for n in ("pack_padded_sequence", "pad_packed_sequence")}
    patched = []
    spaces = [rnn.__dict__] + [type(m).forward.__globals__ for m in root.modules()]
    for space in {id(s): s for s in spaces}.values():
        for key, value in list(space.items()):
            for name, orig in originals.items():
                if value is orig:
                    space[key] = _wrapped(orig)
                    patched.append((space, key, orig))
    # len(lengths) (torch.arange(len(lengths)): each row's index) recorded, in the users'
    # own forwards only (fx refuses len of a traced value)
    users = [type(m).forward.__globals__ for m in root.modules()
             if not type(m).__module__.startswith("torch.")]
    for space in {id(s): s for s in users}.values():
        if "len" not in space:
            space["len"] = _wrapped(builtins.len)
            patched.append((space, "len", None))
    try:
        yield originals
    finally:
        for space, key, orig in patched:
            if orig is None:
                del space[key]
            else:
                space[key] = orig


def trace_graph(root):
    """The fx graph of root's forward, dead code removed; ImportRefused (located) if fx
    cannot trace it (a branch on the data, a loop over a traced size)."""
    import traceback

    from torch import fx

    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    with _packing_wrapped(root) as originals:
        try:
            graph = tracer.trace(root)
        except Exception as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__)
                      if "/torch/" not in f.filename and "/pipeline/" not in f.filename]
            at = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" \
                if frames else ""
            raise _TraceFailed(exc, at) from None
    graph = fx.GraphModule(root, graph).graph     # DCE needs the owning module
    graph.eliminate_dead_code()
    return graph, originals


def leaf_layer(m):
    """The layer of a stateless torch.nn module (Linear, LayerNorm, Dropout, an activation),
    or None."""
    from torch import nn
    name = type(m).__name__
    if isinstance(m, nn.Linear):
        return Linear(m.in_features, m.out_features, m.bias is not None)
    if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
        return LayerNorm(m.normalized_shape[0], m.eps, m.elementwise_affine, m.bias is not None)
    if type(m) is nn.Dropout:
        return Dropout(m.p)
    if name in LEAVES:
        fn = LEAVES[name]
        if fn == "gelu" and m.approximate == "tanh":
            fn = "gelu_tanh"
        if fn.endswith("softmax") and m.dim not in (-1, 1, 2):
            return None
        return Activation(fn, getattr(m, ALPHA.get(fn, ""), None))
    return None


class _TraceFailed(Exception):
    def __init__(self, exc, at):
        super().__init__(str(exc))
        self.exc, self.at = exc, at


def read_chain(root):
    """The Traced chain of root's forward, or None for a cell loop (record it instead)."""
    from ..errors import first_line
    try:
        graph, originals = trace_graph(root)
    except _TraceFailed as failed:
        if any(type(m).__name__ in CELL_MODULES for m in root.modules()):
            return None          # a cell loop: record_cell_loop reads it
        detail = first_line(failed.exc)
        if "control flow" in detail or "iteration" in detail or "interpreted" in detail:
            detail = "its forward depends on the values or the sizes of its input (a data-" \
                     "dependent branch or loop), which torch.fx cannot read"
        raise ImportRefused(f"--module: {detail}{failed.at}") from None
    from .reader import Reader
    return Reader(root, originals).read(graph)


def _is_last_step(index) -> bool:
    if not isinstance(index, tuple) or len(index) not in (2, 3):
        return False
    full = slice(None, None, None)
    return index[0] == full and index[1] == -1 and (len(index) == 2 or index[2] == full)


def _index_words(index) -> str:
    def one(i):
        return ":" if i == slice(None, None, None) else repr(i)
    return ", ".join(one(i) for i in index) if isinstance(index, tuple) else one(index)


def _name(node) -> str:
    target = node.target
    if node.op == "call_method":
        return f".{target}()"
    if node.op == "call_module":
        return str(target)
    return f"{getattr(target, '__module__', '') or ''}.{getattr(target, '__name__', target)}" \
        .lstrip(".").replace("torch.nn.functional", "F").replace("_operator", "operator")
