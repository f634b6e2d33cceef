"""bf16 files of a chain of layers (issue 22's models): hi/lo splits, carried states f32.

    form = choose_chain_form(spec, fp32)                # the cheapest of FORMS within budget
    write_chain_ir(spec, "model", fp32, paths, form)    # model_bf16.xml + .bin (bf16.py)

A chain's graphs (export/chain_graph.py) hold the whole chain under one If: in model.onnx
on batch x H (native operator or Scan, a limit measured for ONNX Runtime), in an LSTM
chain's model_stream.onnx on "every row full length". The stateless file takes the native
branch at every batch (OpenVINO runs the operator much faster than the Scan in bf16: tagger
at (512,100) 1.25x eager against 0.64x; same_function checks both sides of the limit in
f32); the stream file keeps its If (a ragged stream call needs the Scan).

FORMS, cheapest first (measured on the chains of tests/precision/test_chains.py, verify's
data, docs/precision.md "Chains of layers"):

  ()                     nothing split
  ("input",)             the first recurrent operator's input product as in bf16_split
                         ("input"): fed by an embedding (Gather of a constant table E),
                         the table widened to [E_hi, E_lo, E_hi] (exact in bf16, no f32
                         node needed); else x split as [x_hi, x_lo, x] by f32 nodes
                         (bf16_split.SUFFIXES, marked `precise_0`, inside If branches too)
  ("input", "products")  + every MatMul with a constant 2-D weight (Linear layers, heads,
                         a Scan branch's input projection) as [a, a] @ [W_hi; W_lo]

In every form the carried states' layout ops before each recurrent operator become one
Reshape marked f32 (ov_f32._reshape_only): otherwise the plugin rounds a stream's c to bf16
at every step (tagger's stream 1.12% of std -> 0.89% with "input"). A product's output
stays bf16 where a node other than the output follows it (the plugin's choice), so a
per-step head before log_softmax keeps that rounding. choose_chain_form takes the first
form within the default budget on verify's data, stateless and a long stream, against
OpenVINO f32 on the fp32 files (the last form where none is: verify's gate refuses it).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

FORMS = ((), ("input",), ("input", "products"))
NATIVE = ("LSTM", "GRU", "RNN")


def split_chain(model, parts) -> int:
    """Rewrite `model` (a chain's onnx.ModelProto) in place with `parts` split (module
    docstring), in its graph and If branches (not Scan bodies: their products are the
    recurrent ones); returns how many products were split."""
    from onnx import numpy_helper

    from . import graphs
    g = model.graph
    inits = {i.name: i for sub in graphs(g) for i in sub.initializer}
    added: list = []
    done = _split(g, inits, set(parts), added)
    g.initializer.extend(added)
    if _has_x_split(g):                         # x_lo = x + (-1 * x_hi)
        g.initializer.append(numpy_helper.from_array(np.array(-1, np.float32),
                                                     "chain__bf16minus1"))
    return done


def _has_x_split(g) -> bool:
    from . import graphs
    return any(n.name.endswith("__bf16lo") for sub in graphs(g) for n in sub.node)


def _split(g, inits: dict, parts: set, added: list) -> int:
    from onnx import helper, numpy_helper

    from .bf16_split import _hi_lo
    made = {o: n for n in g.node for o in n.output}
    nodes, first, done = [], True, 0
    for node in g.node:
        for a in node.attribute:
            if a.type == a.GRAPH and node.op_type == "If":
                done += _split(a.g, inits, parts, added)
        if node.op_type in NATIVE and first:
            first = False
            src = made.get(node.input[0])
            if "input" in parts and node.input[1] in inits and src is not None \
                    and src.op_type == "Transpose":
                w_hi, w_lo = _hi_lo(numpy_helper.to_array(inits[node.input[1]]))   # (D, G*H, F)
                x = _split_input(made.get(src.input[0]), src, g.node, inits, nodes, added)
                new = f"{node.input[0]}__bf16split"
                nodes.append(helper.make_node("Transpose", [x], [new], name=new,
                                              perm=list(src.attribute[0].ints)))
                added.append(numpy_helper.from_array(np.concatenate([w_hi, w_hi, w_lo], 2),
                                                     f"{node.input[1]}__bf16split"))
                node.input[0], node.input[1] = new, f"{node.input[1]}__bf16split"
                done += 1
        elif node.op_type == "MatMul" and "products" in parts and node.input[1] in inits \
                and len(inits[node.input[1]].dims) == 2:
            b_hi, b_lo = _hi_lo(numpy_helper.to_array(inits[node.input[1]]))       # (K, N)
            a, new = node.input[0], f"{node.output[0]}__bf16twice"
            nodes.append(helper.make_node("Concat", [a, a], [new], axis=-1, name=new))
            added.append(numpy_helper.from_array(np.concatenate([b_hi, b_lo], 0),
                                                 f"{node.output[0]}__bf16w"))
            node.input[0], node.input[1] = new, f"{node.output[0]}__bf16w"
            done += 1
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return done


def _split_input(gather, src, graph_nodes, inits: dict, nodes: list, added: list) -> str:
    """The first recurrent operator's input x = src's input (batch, seq, F) as (batch, seq,
    3F) whose product with [W_hi, W_hi, W_lo] is x W to ~2^-16: an embedding's rows from the
    widened table [E_hi, E_lo, E_hi] (its Gather changed in place where only src and Shapes
    of the leading axes read it: no narrow copy left to compute), else [x_hi, x_lo, x] by
    f32 nodes."""
    from onnx import TensorProto, helper, numpy_helper

    from .bf16_split import _hi_lo
    x = src.input[0]
    if gather is not None and gather.op_type == "Gather" and gather.input[0] in inits:
        e_hi, e_lo = _hi_lo(numpy_helper.to_array(inits[gather.input[0]]))      # (V, F)
        table = f"{gather.input[0]}__bf16wide"
        added.append(numpy_helper.from_array(np.concatenate([e_hi, e_lo, e_hi], -1), table))
        readers = [n for n in graph_nodes if x in n.input and n is not src]
        if all(n.op_type == "Shape" and 0 <= _end(n) < 3 for n in readers):
            gather.input[0] = table                           # its (batch, seq) unchanged
            return x
        out = f"{x}__bf16wide"
        nodes.append(helper.make_node("Gather", [table, gather.input[1]], [out], name=out,
                                      axis=0))
        return out
    hi_c, hi, neg, lo, cat = (f"{x}{s}" for s in ("__bf16hi_c", "__bf16hi", "__bf16neg",
                                                   "__bf16lo", "__bf16cat"))
    nodes += [helper.make_node("Cast", [x], [hi_c], to=TensorProto.BFLOAT16, name=hi_c),
              helper.make_node("Cast", [hi_c], [hi], to=TensorProto.FLOAT, name=hi),
              helper.make_node("Mul", [hi, "chain__bf16minus1"], [neg], name=neg),
              helper.make_node("Add", [x, neg], [lo], name=lo),
              helper.make_node("Concat", [hi, lo, x], [cat], axis=-1, name=cat)]
    return cat


def _end(shape_node) -> int:
    """A Shape node's `end` (-1 where it reads to the last axis)."""
    return next((a.i for a in shape_node.attribute if a.name == "end"), -1)


def keep_states_f32(model) -> int:
    """In OpenVINO's model and its If bodies, each recurrent op's initial states read
    through one Reshape marked f32 where layout ops only reshape (ov_f32._reshape_only);
    returns how many."""
    import openvino.opset13 as ops

    from .ov_f32 import MARK, SEQUENCES, _reshape_only
    done = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "If":
            done += sum(keep_states_f32(op.get_function(i)) for i in range(2))
    for seq in [op for op in model.get_ordered_ops() if op.get_type_name() in SEQUENCES]:
        for port in ([1, 2] if seq.get_type_name() == "LSTMSequence" else [1]):   # h0 (, c0)
            inp = seq.input(port)
            src = _reshape_only(inp)
            dims = list(inp.get_partial_shape())
            if src is None or sum(d.is_dynamic for d in dims[1:]) > 1:
                continue
            pattern = [0] + [-1 if d.is_dynamic else d.get_length() for d in dims[1:]]
            x = ops.reshape(src, ops.constant(np.array(pattern, np.int64)), True)
            x.set_friendly_name(f"{seq.get_friendly_name()}__state{port}")
            x.get_rt_info()[MARK] = ""
            inp.get_source_output().replace(x.output(0))
            done += 1
    model.validate_nodes_and_infer_types()
    return done


def mark_split(model) -> int:
    """Mark the x split's f32 nodes (bf16_split.SUFFIXES) `precise_0`, If bodies too."""
    from .bf16_split import MARK, SUFFIXES
    marked = 0
    for op in model.get_ordered_ops():
        if op.get_friendly_name().endswith(SUFFIXES):
            op.get_rt_info()[MARK] = ""
            marked += 1
        if op.get_type_name() == "If":
            marked += sum(mark_split(op.get_function(i)) for i in range(2))
    return marked


def chain_ir(model, xml: Path, form, native: bool) -> None:
    """`model` (model.onnx's or model_stream.onnx's ModelProto, changed in place) in `form`
    as IR at xml (+ .bin); `native`: model.onnx's native branch taken at every batch."""
    import onnx
    import openvino as ov

    from .bf16 import native_branch
    from .bf16_split import state_from_last_step
    if native:
        native_branch(model.graph)
    split_chain(model, form)
    state_from_last_step(model.graph)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "chain.onnx"
        onnx.save(model, str(src))
        ir = ov.Core().read_model(str(src))
    mark_split(ir)
    keep_states_f32(ir)
    ov.save_model(ir, str(xml), compress_to_fp16=False)


def write_chain_ir(spec, kind: str, fp32: dict, paths: dict, form=()) -> None:
    """A chain's bf16 file of `kind` in `form` into paths[kind] (xml) and paths[kind_bin];
    the stateless one checked to compute model.onnx's function (OpenVINO f32, both sides of
    its If's batch limit)."""
    import onnx

    from .bf16 import same_function
    model = onnx.load(str(fp32[kind]))
    above = native_limit(model) + 1
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        chain_ir(model, xml, form, native=kind == "model")
        if kind == "model":
            same_function(spec, fp32["model"], xml, above=above)
        Path(paths[kind]).write_bytes(xml.read_bytes())
        Path(paths[f"{kind}_bin"]).write_bytes(xml.with_suffix(".bin").read_bytes())


def native_limit(model) -> int:
    """The batch limit of model.onnx's If (LessOrEqual(batch, limit)); 0 where none."""
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type == "LessOrEqual":
            name = node.input[1]
            if name in inits:
                return int(numpy_helper.to_array(inits[name]).ravel()[0])
            if name in consts:
                return int(numpy_helper.to_array(consts[name].attribute[0].t).ravel()[0])
    return 0


def choose_chain_form(spec, fp32: dict):
    """The first of FORMS whose files are within the default budget against OpenVINO f32
    on the fp32 files (eager to ~1e-6): stateless on verify's data, and where the chain
    has a stream form a long stream (gate.LONG_BATCH x LONG_STEPS, drawn); () where this
    CPU has no bf16 units to measure; the last form where none is."""
    import onnx

    from ..inputs import sample_input
    from ..runtimes.openvino import load_openvino
    from .bf16 import cpu_has_bf16
    from .budget import DEFAULT_BUDGET, figures, judge
    from .gate import LONG_BATCH, LONG_STEPS, long_stream, run_all
    from .ov_f32 import verify_inputs
    if not cpu_has_bf16():
        return ()
    inputs, classes = verify_inputs(spec), spec.task == "classification"
    want = run_all(load_openvino(spec, fp32["model"], 1), spec, inputs)
    x = None
    if "stream" in fp32:
        x = sample_input(spec, np.random.default_rng(1000), LONG_BATCH, LONG_STEPS)
        want_stream = long_stream(_stream(load_openvino(spec, fp32["stream"], 1), spec),
                                  spec, x)
    with tempfile.TemporaryDirectory() as tmp:
        for form in FORMS:
            xml = Path(tmp) / f"{'_'.join(form) or 'plain'}.xml"
            chain_ir(onnx.load(str(fp32["model"])), xml, form, native=True)
            got = run_all(load_openvino(spec, xml, 1, hint="bf16"), spec, inputs)
            if judge(figures(got, want, classes), DEFAULT_BUDGET):
                continue
            if x is None:
                return form
            chain_ir(onnx.load(str(fp32["stream"])), xml, form, native=False)
            got = long_stream(_stream(load_openvino(spec, xml, 1, hint="bf16"), spec), spec, x)
            if not judge(figures([got], [want_stream], classes), DEFAULT_BUDGET):
                return form
    return FORMS[-1]


def _stream(runner, spec):
    """A stream file's runner, its inputs and outputs named by the contract (gate.py)."""
    runner.inputs = tuple(t.name for t in spec.stream_inputs)
    runner.outputs = tuple(t.name for t in spec.stream_outputs)
    return runner
