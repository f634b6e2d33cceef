"""Where an LSTM stream step's time goes at batch 1 in ONNX Runtime (issue 23's 5x target).

    python -m pipeline.bench_step --out /tmp/cells --model lstm_2       # after bench_cells
    python -m pipeline.bench_step --out exported --model MODEL --repeats 9

For a one-stack unidirectional LSTM model folder (its model_stream.onnx), one thread, one
step (batch 1, seq 1, state fed in), each form timed by `session.run` (numpy feeds) and by
io_binding on preallocated buffers, in interleaved blocks of 2,000 calls, minimum kept:

  floor     an Identity graph on a (1, 1, F) tensor: ORT's cost of an empty call
  portable  model_stream.onnx as exported: the If on "every row full length" (the LSTM
            operator when it holds, the Scan emitting c per step when rows are ragged),
            each layer's state gathered, restacked batch-major
  ort_only  the same weights in a form only ONNX Runtime runs right: each layer's LSTM
            operator given `sequence_lens` (its Y_h / Y_c are then each row's state at its
            own last step: no If, no gathers; OpenVINO ignores sequence_lens and tract
            refuses it, so the portable file cannot), state (batch, layers, H) in by
            Transpose + Split and out by Concat + Transpose, the Gemm head
  bare      the LSTM operators and the Gemm alone, each state already in the operator's
            (1, batch, H) layout: no contract a client can use, the least any graph built
            on these operators can cost

ort_only is first checked against portable on ragged rows (lengths 7, 4, 1 of 7) with
random states: the max abs difference of every output is printed (the eager reference
checks of the portable file are verify's and tests/export/test_stream.py's). Writes
`<out>/<model>/benchmark_step.json`. A benchmark: figures for reading, never asserted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np


def _weights(path: Path):
    """(per layer (W, R, B) of the LSTM operator, Gemm (weight, bias)) of a stream file."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    branch = next(a.g for n in model.graph.node if n.op_type == "If"
                  for a in n.attribute if a.name == "then_branch")
    layers = [tuple(init[n.input[i]] for i in (1, 2, 3))
              for n in branch.node if n.op_type == "LSTM"]
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    return layers, (init[gemm.input[1]], init[gemm.input[2]])


def build(layers, head, spec, bare: bool = False):
    """The ort_only form (or, with `bare`, the operators alone) as an onnx ModelProto."""
    from onnx import TensorProto, helper, numpy_helper
    H, L, F = spec.hidden_size, len(layers), spec.input_size
    (h_in, c_in), (h_out, c_out) = ([t.name for t in ts[-2:]] for ts in
                                    (spec.stream_inputs, spec.stream_outputs))
    consts, nodes = {}, []

    def const(name, value):
        consts[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def node(op, ins, outs, **attrs):
        nodes.append(helper.make_node(op, ins, outs, **attrs))

    def info(name, shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, dtype, shape)

    if bare:              # time-major input, every state as the operator takes it
        ins = [info("xs", [1, "batch", F])] + [info(f"{s}{k}", [1, "batch", H])
                                               for k in range(L) for s in "hc"]
    else:
        state = ["batch", L, H] if L > 1 else ["batch", H]
        ins = [info(spec.input_name, ["batch", "seq", F]),
               info(spec.lengths_name, ["batch"], TensorProto.INT64),
               info(h_in, state), info(c_in, state)]
        node("Transpose", [spec.input_name], ["xs"], perm=[1, 0, 2])     # (S, B, F)
        node("Cast", [spec.lengths_name], ["len32"], to=TensorProto.INT32)
        for s, name in (("h", h_in), ("c", c_in)):                      # (B, L, H) -> L x (1, B, H)
            if L > 1:
                node("Transpose", [name], [f"{s}T"], perm=[1, 0, 2])
                node("Split", [f"{s}T", const("ones", np.ones(L, np.int64))],
                     [f"{s}{k}" for k in range(L)], axis=0)
            else:
                node("Unsqueeze", [name, const("axis0", np.array([0]))], [f"{s}0"])
    x = "xs"
    for k, (w, r, b) in enumerate(layers):
        node("LSTM", [x, const(f"W{k}", w), const(f"R{k}", r), const(f"B{k}", b),
                      "" if bare else "len32", f"h{k}", f"c{k}"],
             [f"y{k}", f"yh{k}", f"yc{k}"], hidden_size=H)
        if k < L - 1:
            node("Squeeze", [f"y{k}", const("axis1", np.array([1]))], [f"x{k + 1}"])
            x = f"x{k + 1}"
    node("Squeeze", [f"yh{L - 1}", const("axis0", np.array([0]))], ["top"])   # (B, H)
    node("Gemm", ["top", const("head_w", head[0]), const("head_b", head[1])],
         [spec.output_name], transB=1)
    outs = [info(spec.output_name, ["batch", spec.output_size])]
    if bare:
        outs += [info(f"y{s}{k}", [1, "batch", H]) for k in range(L) for s in "hc"]
    else:
        for s, name in (("h", h_out), ("c", c_out)):                   # L x (1, B, H) -> (B, L, H)
            if L > 1:
                node("Concat", [f"y{s}{k}" for k in range(L)], [f"{s}L"], axis=0)
                node("Transpose", [f"{s}L"], [name], perm=[1, 0, 2])
            else:
                node("Squeeze", [f"y{s}0", "axis0"], [name])
            outs.append(info(name, ["batch", L, H] if L > 1 else ["batch", H]))
    graph = helper.make_graph(nodes, "ort_only_stream", ins, outs, list(consts.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _session(data: bytes, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _feeds(session, rng, batch: int = 1, seq: int = 1, lengths=None) -> dict:
    feeds = {}
    for i in session.get_inputs():
        shape = [{"batch": batch, "seq": seq}.get(d, d) for d in i.shape]
        feeds[i.name] = np.asarray(lengths if lengths is not None else [seq] * batch) \
            if "int64" in i.type else rng.standard_normal(shape).astype(np.float32)
    return feeds


def _binding(session, feeds: dict):
    """An io_binding of the feeds and of preallocated outputs (kept alive on the binding)."""
    binding, keep = session.io_binding(), []
    for name, value in feeds.items():
        binding.bind_input(name, "cpu", 0, value.dtype, list(value.shape), value.ctypes.data)
    first = session.run(None, feeds)
    for out, value in zip(session.get_outputs(), first):
        buf = np.zeros_like(value)
        keep.append(buf)
        binding.bind_output(out.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
    binding.keep = (keep, feeds)
    return binding


def main(out: Path, model: str, repeats: int = 9, threads: int = 1, log=print) -> dict:
    from onnx import TensorProto, helper

    from .checkpoint import read_config
    model_dir = Path(out) / model
    spec = read_config(model_dir)["recipe"].model
    if spec.cell != "lstm" or spec.form != "stack" or spec.bidirectional or spec.layers:
        from .errors import InputError
        raise InputError(f"{model}: a {spec.cell} {spec.form}; bench_step times one-stack "
                         "unidirectional LSTM models only")
    stream_path = model_dir / "model_stream.onnx"
    layers, head = _weights(stream_path)
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, spec.input_size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, spec.input_size])]),
        opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    sessions = {"floor": _session(identity.SerializeToString(), threads),
                "portable": _session(stream_path.read_bytes(), threads),
                "ort_only": _session(build(layers, head, spec).SerializeToString(), threads),
                "bare": _session(build(layers, head, spec, bare=True).SerializeToString(),
                                 threads)}
    rng = np.random.default_rng(0)
    ragged = _feeds(sessions["portable"], rng, 3, 7, [7, 4, 1])
    diff = [float(np.abs(a - b).max()) for a, b in zip(sessions["portable"].run(None, ragged),
                                                       sessions["ort_only"].run(None, ragged))]
    log(f"ort_only vs portable, ragged rows (7, 4, 1 of 7 steps): max abs diff {diff}")
    calls = {}
    for name, s in sessions.items():
        feeds = _feeds(s, rng)
        binding = _binding(s, feeds)
        calls[f"{name} run"] = lambda s=s, f=feeds: s.run(None, f)
        calls[f"{name} io_binding"] = lambda s=s, b=binding: s.run_with_iobinding(b)
    best = {k: float("inf") for k in calls}
    load = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            for _ in range(2000):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / 2000 * 1e6)
    load.append(os.getloadavg()[0])
    rows = {k: {"us": v, "over_floor": v / best["floor " + k.split(" ")[1]]}
            for k, v in best.items()}
    result = {"model": model, "layers": len(layers), "hidden": spec.hidden_size,
              "threads": threads, "repeats": repeats, "ragged_max_abs_diff": diff,
              "load_avg_1min_before_after": load, "times": rows}
    (model_dir / "benchmark_step.json").write_text(json.dumps(result, indent=1))
    log(f"{model}: LSTM stream step, batch 1, {threads} thread(s), min of {repeats} x 2000 "
        f"calls, load {load[0]:.1f} -> {load[1]:.1f}")
    for k, r in rows.items():
        log(f"  {k:<22} {r['us']:7.2f} µs  {r['over_floor']:5.2f}x the floor")
    return result


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("exported"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    from .errors import PipelineError
    try:
        main(args.out, args.model, args.repeats)
    except PipelineError as e:             # a missing or unfit model folder: one line, exit 1
        raise SystemExit(f"Error: {e}") from None
