"""int8 on this CPU: each int8 form's error (verify's budget figures) and speed, and where
the error comes from.

    python -m pipeline.bench_int8 --out /tmp/int8                  # lstm_2, ~1-2 min
    python -m pipeline.bench_int8 --out /tmp/int8 --cells lstm_1,lstm_2,gru_2 --repeats 15

For each cell of pipeline/bench_cells.py (the user's module: H=64, F=16, a Linear head) it
imports the module, exports fp32 and int8, then measures these forms of model.onnx:
  onnx:fp32           the fp32 file
  int8 file           model_int8.onnx as export wrote it (recurrent products int8, this
                      CPU's weight type)
  recurrent u8 / s8   quantize(model, "u8"|"s8"): only the Scan steps' products int8
  every product u8/s8 quantize(model, "u8"|"s8", inputs=True): DynamicQuantizeLSTM, the
                      input projections int8 too
  weights only        the fp32 graph with every product's weights rounded to 8 bits per row
                      (float32 arithmetic): the weights' share of the error
s8 forms are left out on a CPU without VNNI (its u8 x s8 kernels saturate). Figures: the
budget gate's own (precision/gate.py check_pair: verify's data, stateless, and a 1200-step
stream). Then, for an LSTM stack, each quantization source alone in a float64 numpy model
of the same arithmetic (layer l's input weights W<l>, recurrent weights R<l>, its input
sequence X<l> with one scale per call, its state H<l> with one scale per step). Speed: the
user's module (eager, one thread) against each form in ORT (one thread), interleaved, the
minimum of --repeats blocks (load only adds time), at (1,50), (64,200), (512,100).
Prints the tables and saves `<out>/int8.json` and `<out>/int8.md`, with the load average.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .bench_cells import SHAPES, min_time, user_module

SOURCES = ("W", "R", "X", "H")


def forms(vnni: bool) -> dict:
    """name -> ModelProto -> ModelProto (None: the exported int8 file)."""
    from .precision.int8 import quantize
    table = {"onnx:fp32": lambda m: m, "int8 file": None}
    for w in ("u8", "s8") if vnni else ("u8",):
        table[f"recurrent {w}"] = lambda m, w=w: quantize(m, w)
        table[f"every product {w}"] = lambda m, w=w: quantize(m, w, inputs=True)
    table["weights only"] = weights_only
    return table


def weights_only(model):
    """The fp32 graph with every product's constant weights (what quantize(inputs=True)
    quantizes) replaced by their per-row 8-bit values; float32 arithmetic."""
    import copy

    from onnx import numpy_helper

    from .precision.int8 import quantize_rows
    model = copy.deepcopy(model)
    names, augmented = set(), set()

    def walk(g):
        for n in g.node:
            for a in n.attribute:
                if a.type == a.GRAPH:
                    walk(a.g)
            if n.op_type in ("LSTM", "GRU", "RNN"):
                names.update(n.input[1:3])
            elif n.op_type in ("Gemm", "MatMul") and not any(a.i for a in n.attribute
                                                             if a.name in ("transA", "transB")):
                names.add(n.input[0])
                if n.op_type == "MatMul":      # W_aug: its last column is the bias, kept
                    augmented.add(n.input[0])
    walk(model.graph)
    for init in model.graph.initializer:
        if init.name in names and init.data_type == 1:
            w = numpy_helper.to_array(init)
            if w.ndim < 2:
                continue
            rows = w.reshape(-1, w.shape[-1]).copy()
            cols = slice(0, -1) if init.name in augmented and w.shape[-1] > 1 else slice(None)
            q, scale = quantize_rows(rows[:, cols])
            rows[:, cols] = q * scale[:, None]
            init.CopyFrom(numpy_helper.from_array(
                rows.reshape(w.shape).astype(np.float32), init.name))
    return model


def build(name: str, out: Path) -> Path:
    from .export import ExportConfig
    from .export import main as export
    from .importing import ImportConfig
    from .importing import main as import_model
    weights = out / f"{name}.pt"
    torch.save(user_module(name).state_dict(), weights)
    quiet = lambda s: None   # noqa: E731
    import_model(ImportConfig(name, weights, "classification",
                              module=f"pipeline.bench_cells:{name}", out=out), log=quiet)
    export(ExportConfig(name, out, precisions=("fp32", "int8")), log=quiet)
    return out / name


def errors(model_dir: Path, table: dict) -> tuple[dict, dict, object]:
    """{form: the gate's entry}, {form: file}, the gate's Eager (its data and outputs)."""
    import onnx

    from .checkpoint import read_config
    from .precision.budget import DEFAULT_BUDGET
    from .precision.gate import Eager, check_pair, verification_inputs
    from .runtimes import load_runner
    from .verify import SCALES, default_shapes
    spec = read_config(model_dir)["recipe"].model
    reference = load_runner("torch", spec, model_dir, "cpu", threads=1)
    eager = Eager(spec, model_dir, reference,
                  verification_inputs(spec, default_shapes(spec), SCALES))
    rows, paths = {}, {}
    for form, make in table.items():
        files = {}
        for kind, src in (("model", "model.onnx"), ("stream", "model_stream.onnx")):
            if make is None:
                files[kind] = src.replace(".onnx", "_int8.onnx")
                continue
            try:
                proto = make(onnx.load(str(model_dir / src)))
            except ValueError as exc:          # a GRU/RNN stream graph: no int8 form
                rows.setdefault(form, {})["skipped"] = str(exc)
                continue
            files[kind] = f"bench_{form.replace(' ', '_').replace(':', '_')}_{src}"
            (model_dir / files[kind]).write_bytes(proto.SerializeToString())
        files = {k: f for k, f in files.items() if (model_dir / f).exists()}
        rows[form] = {**rows.get(form, {}), **check_pair(
            "onnx", "int8", model_dir, {"files": files}, eager, DEFAULT_BUDGET)}
        paths[form] = model_dir / files["model"]
    return rows, paths, eager


def sources(name: str, state: dict, eager) -> dict:
    """An LSTM stack's quantization sources, one at a time and all together (max error /
    std on the gate's data), in a float64 model of DynamicQuantizeLSTM's arithmetic."""
    layers = sum(k.startswith("rnn.weight_ih_l") for k in state)
    w = {k: v.double().numpy() for k, v in state.items()}
    cases = [[f"{s}{layer}"] for layer in range(layers) for s in SOURCES]
    cases += [[f"R{layer}" for layer in range(layers)] + [f"H{layer}" for layer in range(layers)],
              [f"{s}{layer}" for layer in range(layers) for s in SOURCES]]
    from .precision.budget import figures
    result = {}
    for flags in cases:
        got = [_lstm_stack(w, f["input"], set(flags), layers) for f in eager.inputs]
        result["+".join(flags)] = figures(got, eager.outputs, True)["max_rel_std"]
    return result


def _fake_act(a: np.ndarray) -> np.ndarray:
    """uint8, one scale and zero point for the whole tensor (ORT's DynamicQuantizeLinear)."""
    lo, hi = min(0.0, a.min()), max(0.0, a.max())
    scale = (hi - lo) / 255 or 1.0
    zp = np.rint(-lo / scale)
    return (np.clip(np.rint(a / scale) + zp, 0, 255) - zp) * scale


def _fake_rows(m: np.ndarray) -> np.ndarray:
    from .precision.int8 import quantize_rows
    q, scale = quantize_rows(m)
    return q * scale[:, None]


def _lstm_stack(w: dict, x: np.ndarray, flags: set, layers: int) -> np.ndarray:
    h_seq = x.astype(np.float64).transpose(1, 0, 2)                # (seq, batch, F)
    for layer in range(layers):
        wih, whh = w[f"rnn.weight_ih_l{layer}"], w[f"rnn.weight_hh_l{layer}"]   # (4H, K)
        wih = _fake_rows(wih) if f"W{layer}" in flags else wih
        whh = _fake_rows(whh) if f"R{layer}" in flags else whh
        xs = _fake_act(h_seq) if f"X{layer}" in flags else h_seq
        proj = xs @ wih.T + w[f"rnn.bias_ih_l{layer}"] + w[f"rnn.bias_hh_l{layer}"]
        H = whh.shape[1]
        h = c = np.zeros((x.shape[0], H))
        outs = []
        for t in range(len(proj)):
            z = proj[t] + (_fake_act(h) if f"H{layer}" in flags else h) @ whh.T
            i, f, o = (1 / (1 + np.exp(-z[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
            c = f * c + i * np.tanh(z[:, 2 * H:3 * H])
            h = o * np.tanh(c)
            outs.append(h)
        h_seq = np.stack(outs)
    return h_seq[-1] @ w["head.weight"].T + w["head.bias"]


def speed(name: str, out: Path, paths: dict, repeats: int) -> list[dict]:
    from .bench_cells import _session
    module = user_module(name)
    module.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True))
    sessions = {form: _session(p) for form, p in paths.items() if form != "weights only"}
    rng, rows = np.random.default_rng(0), []
    for batch, seq in SHAPES:
        x = rng.standard_normal((batch, seq, 16)).astype(np.float32)
        xt = torch.from_numpy(x)
        calls = {"eager": lambda: module(xt)}
        calls.update({f: (lambda s: lambda: s.run(None, {"input": x}))(s)
                      for f, s in sessions.items()})
        with torch.inference_mode():
            us = min_time(calls, repeats)
        rows.append({"shape": f"{batch}x{seq}", "us": us,
                     "vs_eager": {f: us["eager"] / us[f] for f in sessions}})
    return rows


def main(out: Path, cells=("lstm_2",), repeats: int = 9, log=print) -> dict:
    from .precision.int8 import cpu_has_vnni, weight_type
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vnni = cpu_has_vnni()
    result = {"cpu": _cpu_name(), "vnni": vnni, "weight_type": weight_type(), "cells": {},
              "load_avg_before_after": [os.getloadavg()], "threads": 1, "repeats": repeats}
    for name in cells:
        model_dir = build(name, out)
        rows, paths, eager = errors(model_dir, forms(vnni))
        cell = {"errors": {f: {k: r.get(k) for k in ("status", "reason", "figures", "stream",
                                                     "skipped")} for f, r in rows.items()}}
        if name.startswith("lstm"):
            state = torch.load(out / f"{name}.pt", weights_only=True)
            cell["sources"] = sources(name, state, eager)
        cell["speed"] = speed(name, out, paths, repeats)
        result["cells"][name] = cell
        log(table(name, cell))
    result["load_avg_before_after"].append(os.getloadavg())
    (out / "int8.json").write_text(json.dumps(result, indent=1, default=str))
    text = "\n\n".join(table(n, c) for n, c in result["cells"].items())
    before, after = result["load_avg_before_after"]
    text += (f"\n\n{result['cpu']}, VNNI: {vnni}, the int8 file's weights: "
             f"{result['weight_type']}; load average before {before[0]:.1f}, after "
             f"{after[0]:.1f}; one thread, min of {repeats} interleaved blocks")
    (out / "int8.md").write_text(text + "\n")
    log(text.rsplit("\n", 1)[-1])
    return result


def table(name: str, cell: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.2f}%"
    forms_ = list(cell["errors"])
    lines = [f"**{name}**", "", "| form | max err / std | p99.9 / std | labels | stream max "
             "| stream labels | verdict | " + " | ".join(
                 f"{r['shape']} vs eager" for r in cell["speed"]) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(cell["speed"])]
    for f in forms_:
        e = cell["errors"][f]
        fig, s = e.get("figures") or {}, e.get("stream") or {}
        speeds = " | ".join(f"{r['vs_eager'][f]:.2f}x" if f in r["vs_eager"] else "-"
                            for r in cell["speed"])
        lines.append(f"| {f} | {pct(fig.get('max_rel_std'))} | {pct(fig.get('p999_rel_std'))} "
                     f"| {pct(fig.get('label_agree'))} | {pct(s.get('max_rel_std'))} | "
                     f"{pct(s.get('label_agree'))} | {e.get('status')} | {speeds} |")
    eager = " / ".join(f"{r['us']['eager']:.0f}" for r in cell["speed"])
    lines.append(f"\neager µs at {' / '.join(r['shape'] for r in cell['speed'])}: {eager}")
    if cell.get("sources"):
        lines.append("\nmax error / std from one source alone (float64 model): " + ", ".join(
            f"{k} {pct(v)}" for k, v in cell["sources"].items()))
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    import click

    from .bench_cells import CELLS

    @click.command()
    @click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Where the models are built and int8.json / int8.md written.")
    @click.option("--cells", default="lstm_2", show_default=True,
                  help=f"Comma-separated cells of {', '.join(CELLS)}.")
    @click.option("--repeats", type=click.IntRange(min=1), default=9, show_default=True,
                  help="Interleaved timing blocks per runner; the minimum is reported.")
    def command(out, cells, repeats):
        names = [c.strip() for c in cells.split(",") if c.strip()]
        unknown = [c for c in names if c not in CELLS]
        if unknown:
            raise click.ClickException(f"unknown cell(s) {', '.join(unknown)}; choose from "
                                       f"{', '.join(CELLS)}")
        main(out, names, repeats)

    command()
