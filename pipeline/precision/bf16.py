"""bf16: the fp32 graph compiled by OpenVINO with INFERENCE_PRECISION_HINT=bf16.

    model_bf16.xml + .bin          (export --precision bf16; OpenVINO IR, run by "openvino"
    model_stream_bf16.xml + .bin    only, with the bf16 hint; the stream pair where the
                                    model has a stream form)

OpenVINO's CPU plugin runs the matrix products in bfloat16 (8 bits of mantissa) on the
AVX512_BF16 / AMX units, accumulating in float32. The runner records the precision the
compiled model reports back; a CPU without bf16 units gets f32 back, and that pair is then
not bf16 at all (`unavailable` says so before anything is timed; `cpu_has_bf16` reads the
CPU's flags).

Its own stateless file, the same function: model.onnx holds `If(batch x H <= the family's
native limit)` between the native operator (LSTM/GRU/RNN) and a Scan, a limit measured for
ONNX Runtime. OpenVINO's bf16 runs the native operator much faster than the Scan at every
batch (2-layer LSTM H=64, one thread, min of 5 blocks, under load: native 1.80x eager at
(512,100), the Scan that model.onnx picks there 0.47x; GRU 3.0x against 1.2x), so
model_bf16.xml is model.onnx with that If replaced by its native branch. `write` checks
it computes model.onnx's function (OpenVINO f32, both sides of the limit); a chain of
layers (issue 22) too (bf16_chain.py). The stream file's If (an LSTM's "every row full
length") stays.

The split (bf16_split.py): for a one-stack model both files are then rewritten so that the
products with a weight (the input projection, the head) are each two bf16 products summing
to the float32 one, the input split as x_hi + x_lo in float32 nodes the plugin keeps in f32
(rt_info, hence OpenVINO IR: ONNX has no place for it). Measured (2-layer LSTM H=64, verify's
data): the max error fell from 1.49% of the std to 0.89%, after the 1200-step stream from
1.15% to 0.75%, inside the default budget (docs/precision.md). The split also reads the
last layer's final state as Y's last step, so that OpenVINO runs the operator seq-major
without reordering X and Y (lstm_1 1.00x -> 1.31x eager at (64,200)). A chain of layers is
split by bf16_chain.py (an embedding's table widened, the products of its Linear layers,
its carried states kept f32), in the cheapest of its forms within the default budget (the
manifest's `split`).

Where the split file is outside the default budget on verify's data (a 2-layer GRU or tanh
RNN: the rest of their error is the operator's recurrent product), `choose_form` keeps the
last layer, then the last two..., then every node in f32 (ov_f32.py, `precise_0` marks the
plugin keeps) and takes the first form within the budget; the manifest's `f32_layers` says
which ("all": the pair computes f32, 0.0002% of std, so Triton's openvino backend, which has
no key asking for f32, serves an f32 model with it). Measured: gru_2 "all" (1.69x / 1.88x
eager at (64,200) / (512,100) against ORT fp32's 1.33x / 1.46x), rnn_tanh_2 [1] (within the
budget, but slower than ORT fp32 there).

bf16 in ONNX Runtime was tried too: onnxruntime 1.31.1's CPU provider has no bfloat16 kernel
for MatMul, Gemm, Sigmoid, Tanh, Add or Mul ("NOT_IMPLEMENTED: Could not find an
implementation"), and the ONNX LSTM operator does not take bfloat16 at all (its
fastmath bf16 GEMM option is for ARM64 only), so a bf16 file of these graphs does not load:
ORT is not a bf16 runtime on x86 (docs/precision.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Variant

NATIVE = ("LSTM", "GRU", "RNN")


class BF16(Variant):
    name, runtimes = "bf16", ("openvino",)
    summary = ("the fp32 graph (native recurrent operator; input and head products split "
               "hi/lo) compiled by OpenVINO with the bf16 hint")

    def files(self, spec):
        files = {"model": "model_bf16.xml", "model_bin": "model_bf16.bin"}
        if spec.has_stream:
            files.update(stream="model_stream_bf16.xml", stream_bin="model_stream_bf16.bin")
        return files

    def write(self, spec, fp32, paths):
        from ..errors import ExportError
        # the cheapest form within the default budget: a one-stack model's f32 layers
        # (choose_form), a chain's splits (bf16_chain.py)
        from .bf16_chain import choose_chain_form, write_chain_ir
        try:
            form = choose_chain_form(spec, fp32) if spec.layers else choose_form(spec, fp32)
        except ValueError as exc:
            raise ExportError(f"{spec.name} {self.files(spec)['model']}: {exc}") from None
        for kind in ("model", "stream"):
            if kind not in paths:
                continue
            try:
                if spec.layers:
                    write_chain_ir(spec, kind, fp32, paths, form)
                else:
                    _write_ir(spec, kind, fp32, paths, form)
            except ValueError as exc:
                raise ExportError(f"{spec.name} {self.files(spec)[kind]}: {exc}") from None
        # for the manifest: a chain's splits (bf16_chain.FORMS); a one-stack model's
        # recurrent layers kept f32 (their indices; "all": every node f32)
        if spec.layers:
            return {"split": list(form)}
        return {"f32_layers": "all" if form == "all" else list(form)}

    def artifact(self, entry, stream):
        kind = "stream" if stream else "model"
        return entry.get("files", {}).get(kind) or entry.get("runs", {}).get(kind)

    def load(self, runtime, spec, path, threads=None, stream=False):
        from ..errors import PipelineError
        from ..runtimes.openvino import load_openvino
        runner = load_openvino(spec, path, threads, hint="bf16")
        if runner.precision != "bfloat16":     # the plugin decides; a CPU without bf16 units
            raise PipelineError(f"{path}: OpenVINO compiled it in {runner.precision}, not bf16")
        return runner

    def smoke_load(self, runtime, spec, path, stream, files=None):
        """Where this CPU has no bf16 units, export's self-check runs the file in f32. An IR
        written to export's temp names is loaded from a copy under its own names (OpenVINO
        finds model.bin beside model.xml by name)."""
        import tempfile
        from ..runtimes.openvino import load_openvino
        with tempfile.TemporaryDirectory() as tmp:
            if files and f"{'stream' if stream else 'model'}_bin" in files:
                xml = Path(tmp) / "model.xml"
                xml.write_bytes(Path(path).read_bytes())
                xml.with_suffix(".bin").write_bytes(
                    Path(files[f"{'stream' if stream else 'model'}_bin"]).read_bytes())
                path = xml
            if cpu_has_bf16():
                return self.load(runtime, spec, path, threads=1, stream=stream)
            return load_openvino(spec, path, 1)

    def unavailable(self, runtime):
        reason = super().unavailable(runtime)
        if reason is None and not cpu_has_bf16():
            return "this CPU has no bf16 units (AVX512_BF16 or AMX)"
        return reason


def _write_ir(spec, kind: str, fp32: dict, paths: dict, layers=()) -> None:
    """A one-stack model's bf16 file (a chain's: bf16_chain.write_chain_ir):
    model.onnx's native branch (stateless) or the stream file, split (bf16_split), as
    IR into paths[kind] (xml) and paths[kind + "_bin"]; the stateless one checked in f32.
    `layers`: the recurrent layers kept f32 ("all": every node; ov_f32.py)."""
    import tempfile

    import onnx

    from .bf16_split import SUFFIXES, save_ir, split_products, splits_input
    model = onnx.load(str(fp32[kind]))
    with tempfile.TemporaryDirectory() as tmp:
        src, xml = Path(tmp) / "split.onnx", Path(tmp) / "model.xml"
        if layers:
            from .ov_f32 import f32_ir
            f32_ir(model, xml, None if layers == "all" else list(layers),
                   None if layers == "all" else spec.input_name, native=kind == "model")
        else:
            if kind == "model":
                native_branch(model.graph)
            split_products(model, spec.input_name)
            onnx.save(model, str(src))
            # every f32 node of the input's split found and marked in OpenVINO's model
            save_ir(src, xml, marks=len(SUFFIXES) if splits_input(model) else 0)
        if kind == "model":
            same_function(spec, fp32["model"], xml)
        Path(paths[kind]).write_bytes(xml.read_bytes())
        Path(paths[f"{kind}_bin"]).write_bytes(xml.with_suffix(".bin").read_bytes())


def choose_form(spec, fp32: dict):
    """The recurrent layers a one-stack model's bf16 files keep f32: the first form of
    ov_f32.ladder whose stateless file is within the default budget on verify's data
    against model.onnx in OpenVINO f32 (eager to ~1e-6): [] (the split file) where it is,
    or where this CPU has no bf16 units to measure; else the last k layers, or "all" (every
    node f32: the bf16 pair then computes f32, which Triton's bf16-only openvino backend can
    serve). Measured (docs/precision.md "f32 layers under the bf16 hint"): gru_2 needs
    every layer, rnn_tanh_2 its last one. verify's gate still judges the chosen files."""
    import tempfile

    import onnx

    from ..runtimes.openvino import load_openvino
    from .budget import DEFAULT_BUDGET, figures, judge
    from .ov_f32 import f32_ir, ladder, layer_count, verify_inputs
    if not cpu_has_bf16():
        return []
    inputs = verify_inputs(spec)
    ref = load_openvino(spec, fp32["model"], 1)
    want = [ref.run(f)[spec.output_name] for f in inputs]
    classes = spec.task == "classification"
    with tempfile.TemporaryDirectory() as tmp:
        for layers in ladder(layer_count(onnx.load(str(fp32["model"])))):
            if layers is None:                      # the last form: f32, nothing to measure
                return "all"
            xml = Path(tmp) / f"form{len(layers)}.xml"
            if not layers:                          # the split file, as export writes it
                _write_ir(spec, "model", fp32, {"model": xml, "model_bin": xml.with_suffix(
                    ".bin")})
            else:
                try:
                    f32_ir(onnx.load(str(fp32["model"])), xml, layers, spec.input_name)
                except ValueError:                  # no such form of this graph: the next
                    continue
            run = load_openvino(spec, xml, 1, hint="bf16")
            got = [run.run(f)[spec.output_name] for f in inputs]
            if not judge(figures(got, want, classes), DEFAULT_BUDGET):
                return layers
    return "all"


def native_branch(g) -> None:
    """Replace each If of `g` whose then-branch runs a native recurrent operator by that
    branch (its nodes, its initializers, an Identity per output); drop what only fed the
    condition."""
    from onnx import helper
    nodes = []
    for node in g.node:
        then = next((a.g for a in node.attribute if a.name == "then_branch"), None)
        if node.op_type == "If" and then is not None and any(
                n.op_type in NATIVE for n in then.node):
            nodes += list(then.node)
            g.initializer.extend(then.initializer)
            nodes += [helper.make_node("Identity", [o.name], [out], name=f"{out}_native")
                      for o, out in zip(then.output, node.output)]
        else:
            nodes.append(node)
    used, keep = {o.name for o in g.output}, []
    for node in reversed(nodes):               # dead code: the condition's Shape, compare...
        if any(o in used for o in node.output):
            keep.append(node)
            used |= set(node.input) | _inner_inputs(node)
    del g.node[:]
    g.node.extend(reversed(keep))
    initializers = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(initializers)


def _inner_inputs(node) -> set[str]:
    """Names a node's subgraphs read (outer-scope values a Scan body or If branch uses)."""
    names = set()
    for a in node.attribute:
        if a.type == a.GRAPH:
            for n in a.g.node:
                names |= set(n.input) | _inner_inputs(n)
    return names


def same_function(spec, fp32_path, path, tol: float = 1e-4, above: int = 1) -> None:
    """ValueError unless `path` gives fp32_path's outputs in OpenVINO f32 at batch 1 and at a
    batch above every family's native limit (both forms of model.onnx's If; a chain's:
    `above`, read from its If by bf16_chain)."""
    from ..inputs import model_feeds
    from ..runtimes.openvino import load_openvino
    rng = np.random.default_rng(0)
    ref, new = load_openvino(spec, fp32_path, 1), load_openvino(spec, path, 1)
    if not spec.layers:
        from ..families import family
        above = family(spec).native_batch_limit(spec.hidden_size) + 1
    for batch in sorted({1, above}):
        feeds = model_feeds(spec, rng, batch, spec.example_seq)
        want = ref.run(feeds)[spec.output_name]
        got = new.run(feeds)[spec.output_name]
        err = float(np.abs(got - want).max())
        if not err <= tol * max(1.0, float(np.abs(want).max())):
            raise ValueError(f"it differs from {fp32_path.name} by {err:.3g} at batch "
                             f"{batch} (OpenVINO f32)")


def cpu_has_bf16() -> bool:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16 = BF16()
