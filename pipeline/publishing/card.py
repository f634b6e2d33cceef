"""The model card: `README.md` in every published version folder, rendered from files on disk.

    >>> text = model_card(spec, "onnx", version=3, metrics=config["metrics"], report=verification,
    ...                   signed_by="sha256:9f2c...")

Everything in it comes from the model's spec (`config.json`'s recipe: the network from its
family's sentence, pipeline/families), its training metrics or, for an imported model, the
state dict it came from, its `verification.json` and the signing key's fingerprint, so the
card cannot drift from the artifact beside it. The card is itself one of the signed files.
"""
from __future__ import annotations

from ..specs import ModelSpec
from .deploy import precision_lines
from .triton import (BACKENDS, MAX_BATCH_SIZE, batched_dims, dims, io_names, stream_io_names,
                     triton_name)

WHAT = {  # spec.task -> what a built-in recipe's model answers (the tasks of pipeline/data.py)
    "regression": "forecasts the next value of channel 0 of a noisy {n}-channel sinusoid "
                  "from the sequence so far",
    "classification": "tells which of {k} AR(1) processes (smooth or alternating) produced a "
                      "{n}-channel sequence; the output holds one logit per class",
}
IMPORTED = {  # spec.task -> what an imported model's output is
    "regression": "a regression model ({o} output values)",
    "classification": "a classifier (one logit for each of {o} classes)",
}


def _shape(shape) -> str:
    return "(" + ", ".join(str(a) for a in shape) + ")"


def _number_first(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _verification(report: dict, stream: bool = False) -> list[str]:
    # a stream model's card shows the stream rows (runtime stream_*), the others the rest
    rows = [r for r in report.get("rows") or []
            if str(r.get("runtime", "")).startswith("stream_") == stream]
    tol = report.get("tolerance", {})
    lines = [f"**{'passed' if report.get('passed') else 'FAILED'}** on `{report.get('device')}` "
             f"({report.get('created', '?')}), tolerance |error| <= {tol.get('atol')} + "
             f"{tol.get('rtol')} * |expected| against eager PyTorch.", "",
             "| runtime | provider | checks | batches | sequence lengths | max abs error | passed |",
             "|---|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r.get("runtime"), r.get("provider")) for r in rows):
        mine = [r for r in rows if (r.get("runtime"), r.get("provider")) == key]
        batches, seqs = (sorted({r.get(k) for r in mine}, key=_number_first) for k in ("batch", "seq"))
        worst = max(float(r.get("max_abs", float("nan"))) for r in mine)
        ok = sum(bool(r.get("passed")) for r in mine)
        lines.append(f"| {key[0]} | {key[1]} | {len(mine)} | {batches} | {seqs} | {worst:.3g} "
                     f"| {ok}/{len(mine)} |")
    return lines


def _signature(name: str, version: int, signed_by: str | None) -> list[str]:
    if signed_by is None:
        return ["**Not signed** (published with `--unsigned`): nothing proves who built this "
                "version, and `verify-release`, `predict --public-key` and serving with a "
                "public key refuse it."]
    return [f"**Signed** by the ECDSA public key `{signed_by}` (sha256 of the public key "
            "PEM, the bundle's key hint). `model.sig` is a Sigstore bundle (OpenSSF model "
            "signing, DSSE envelope, in-toto statement) over the sha256 of every other file "
            "here; `manifest.json`, which it covers, names this folder's model and version. "
            "Check it, from the repository root, with the publisher's public key:", "",
            "```sh", f"python -m pipeline verify-release {name}/{version} "
            "--public-key signing.pub", "```"]


def _origin(spec: ModelSpec, metrics: dict, source: dict | None) -> tuple[str, list[str]]:
    """(what the model is, its "where it comes from" section): training metrics for a
    built-in recipe, the state dict it was read from for an imported model."""
    sizes = dict(n=spec.input_size, o=spec.output_size, k=spec.output_size)
    if source is not None:
        return (f"`{spec.name}` is {IMPORTED[spec.task].format(**sizes)} trained outside this "
                "pipeline and imported from its state dict", [
                    "## Origin (imported)", "",
                    f"Imported by `python -m pipeline import` from `{source.get('file')}` "
                    f"(sha256 `{source.get('sha256')}`); trained elsewhere, so no training "
                    "metrics here. "
                    + ("Its own module's forward was checked to compute the same outputs "
                       f"(`{source.get('module')}`)." if source.get("module") else
                       "The last-step head was assumed (no `--module` was given to check it)."),
                    ""])
    better = "lower" if metrics.get("metric") == "mse" else "higher"
    return f"`{spec.name}` {WHAT[spec.task].format(**sizes)}", [
        "## Training metrics (held-out test split)", "",
        f"| metric | model | baseline ({metrics.get('baseline_kind')}) |", "|---|---|---|",
        f"| {metrics.get('metric')} ({better} is better) | {metrics.get('test', float('nan')):.4f} "
        f"| {metrics.get('baseline', float('nan')):.4f} |", ""]


def _stream_sections(spec: ModelSpec, runtime: str, version: int) -> tuple[list[str], list[str]]:
    """The "Inputs and outputs" section and "Load it" code of a stream model's card."""
    ins, outs = stream_io_names(spec, runtime)
    rows = []
    for kind, names, tensors in (("input", ins, spec.stream_inputs),
                                 ("output", outs, spec.stream_outputs)):
        for name, t in zip(names, tensors):
            shape, reshape = batched_dims(t)
            rows.append(f"| {kind} | `{t.name}` | `{name}` | {t.dtype} | {_shape(t.shape)} "
                        f"| {shape}{' reshape []' if reshape else ''} |")
    path = f"{triton_name(spec.name, 'stream_onnx')}/{version}/{BACKENDS['stream_onnx'][3]}"
    state_in = " and ".join(f"`{i}`" for i, _ in spec.state_names)
    state_out = " and ".join(f"`{o}`" for _, o in spec.state_names)
    zeros = ", ".join(f"np.zeros({_shape((1, *t.shape[1:]))}, dtype=np.float32)"
                      for t in spec.stream_inputs[2:])
    var = [o.replace("_out", "") for _, o in spec.state_names]  # the snippet's variables
    names = ", ".join(var)
    return [
        "## Inputs and outputs (stream model)", "",
        f"Row i runs from its state ({state_in}, row i) over its first `{spec.lengths_name}[i]` "
        f"steps (1 <= length <= seq; padding after them is ignored); {state_out} are the "
        "state after its last valid step (every layer's), `output` the head on the top "
        f"layer's. Feed {state_out} back as {state_in} to continue a stream; zeros start one. "
        "Lengths outside 1..seq are refused by the TorchScript model and by `python -m "
        "pipeline predict --stream`; the ONNX graph cannot check them, so clients must (a "
        "length of 0 reads the last step).", "",
        f"Triton: `max_batch_size: {MAX_BATCH_SIZE}`, `dynamic_batching`; dims omit the "
        "batch axis. Requests batch together only at one padded length: pad to length buckets.",
        "",
        "| | name (file) | name (Triton) | dtype | shape | Triton dims |", "|---|---|---|---|---|---|",
        *rows, ""], [
        "import numpy as np, onnxruntime as ort", "",
        f'session = ort.InferenceSession("{path}", providers=["CPUExecutionProvider"])',
        f"{names} = {zeros}  # a new stream",
        "for step in range(5):  # one step at a time, state carried by the caller",
        "    x = " + (f"np.full((1, 1), step % {spec.input_size}, dtype=np.int64)  # token ids"
                    if spec.input_kind == "tokens" else
                    f"np.full((1, 1, {spec.input_size}), 0.1 * step, dtype=np.float32)"),
        f'    y, {names} = session.run(None, {{"{spec.input_name}": x, '
        f'"{spec.lengths_name}": np.array([1]), '
        + ", ".join(f'"{i}": {v}' for (i, _), v in zip(spec.state_names, var)) + "})"]


def _engine(runtime: str) -> str:
    platform, backend = BACKENDS[runtime][1:3]
    return f"platform `{platform}`" if platform else f"backend `{backend}`"


def model_card(spec: ModelSpec, runtime: str, version: int, metrics: dict, report: dict,
               signed_by: str | None = None, source: dict | None = None) -> str:
    """The card's text; `source`: the recipe's import record (None for a built-in recipe)."""
    from ..families import family      # torch modules live there: imported when a card is made
    from ..layers.chain import describe_chain
    name = triton_name(spec.name, runtime)
    filename = BACKENDS[runtime][3]
    in_name, out_name = io_names(spec, runtime)
    axes = " and ".join(f"`{a}`" for a in dict.fromkeys(
        a for a in spec.input.shape + spec.output.shape if isinstance(a, str)))
    check_first = "check the signature" if signed_by else \
        "check each file against its `manifest.json`"
    # Both runtimes, with paths from the repository root (or an unpacked release tarball).
    onnx_path = f"{triton_name(spec.name, 'onnx')}/{version}/{BACKENDS['onnx'][3]}"
    ts_path = f"{triton_name(spec.name, 'torchscript')}/{version}/{BACKENDS['torchscript'][3]}"
    tokens = spec.input_kind == "tokens"
    y_shape = f"(4, {'25, ' if len(spec.output.shape) == 3 else ''}{spec.output_size})"
    lengths = spec.takes_lengths      # a packed forward: each row's valid steps too
    load = ["import numpy as np, onnxruntime as ort, torch", "",
            (f"x = np.zeros((4, 25), dtype=np.int64)  # (batch, seq) token ids in "
             f"0..{spec.input_size - 1}" if tokens else
             f"x = np.zeros((4, 25, {spec.input_size}), dtype=np.{spec.dtype})  "
             "# (batch, seq, features): any batch, any length"),
            *([f"n = np.array([25, 3, 10, 1])  # {spec.lengths_name}: each row's valid steps"]
              if lengths else []),
            f'session = ort.InferenceSession("{onnx_path}", providers=["CPUExecutionProvider"])',
            f'(y,) = session.run(["{spec.output_name}"], {{"{spec.input_name}": x'
            + (f', "{spec.lengths_name}": n' if lengths else "") + f"}})  # y: {y_shape}", "",
            f'model = torch.jit.load("{ts_path}", map_location="cpu").eval()',
            "with torch.inference_mode():",
            "    y = model(torch.from_numpy(x)" + (", torch.from_numpy(n)" if lengths else "")
            + f").numpy()  # {y_shape}"]
    io = [
        "## Inputs and outputs", "",
        f"{axes} are free in the files: any batch size and any sequence length. Through "
        f"Triton (`max_batch_size: {MAX_BATCH_SIZE}`, dynamic batching) a request, or a merged "
        "batch, holds at most that many; Triton dims leave the batch axis out (`-1`: any "
        "length).", "",
        "| | name (file) | name (Triton) | dtype | shape | Triton dims |", "|---|---|---|---|---|---|",
        f"| input | `{spec.input_name}` | `{in_name}` | {spec.input.dtype} | "
        f"{_shape(spec.input.shape)} | {dims(spec.input)} |",
        f"| output | `{spec.output_name}` | `{out_name}` | {spec.dtype} | "
        f"{_shape(spec.output.shape)} | {dims(spec.output)} |", ""]
    stream = runtime.startswith("stream_")
    if stream:
        io, load = _stream_sections(spec, runtime, version)
    what, origin = _origin(spec, metrics, source)
    return "\n".join([
        f"# {name}, version {version}", "",
        f"{what}. Network: {describe_chain(spec) if spec.layers else family(spec).describe(spec)}.",
        f"This folder is version {version} of the Triton model `{name}` "
        f"(`{filename}`, {_engine(runtime)}). It never changes: a new build is "
        "published as a new version.", "",
        *io,
        *origin,
        *precision_lines(report, runtime),
        "## Verification (`verification.json`)", "",
        *_verification(report, stream), "",
        "## Signature", "",
        *_signature(name, version, signed_by), "",
        "## Load it", "",
        "With Triton: `tritonserver --model-repository <repository>`; this version serves as "
        f"`{name}`. Directly, with onnxruntime or torch, from the repository root "
        f"({check_first} first):", "",
        "```python", *load, "```", "",
        "`manifest.json` lists every file here with its sha256 and size, and the export "
        "manifest of the build (library versions, source commit, ONNX graph) it came from.", "",
    ])
