"""The model card: `README.md` in every published version folder, rendered from files on disk.

    >>> text = model_card(spec, "onnx", version=3, metrics=config["metrics"], report=verification,
    ...                   signed_by="sha256:9f2c...")

Everything in it comes from the model's spec (`config.json`'s recipe), its training metrics,
its `verification.json` and the signing key's fingerprint, so the card cannot drift from the
artifact beside it. The card is itself one of the signed files.
"""
from __future__ import annotations

from ..specs import ModelSpec
from .triton import BACKENDS, MAX_BATCH_SIZE, dims, io_names, triton_name

WHAT = {  # spec.task -> what the model answers (the synthetic tasks of pipeline/data.py)
    "regression": "forecasts the next value of channel 0 of a noisy {n}-channel sinusoid "
                  "from the sequence so far",
    "classification": "tells which of {k} AR(1) processes (smooth or alternating) produced a "
                      "{n}-channel sequence; the output holds one logit per class",
}
HOW = {  # spec.arch -> the network
    "rnn_cell_loop": "`nn.RNNCell` ({n} -> {h}, tanh) stepped over the sequence, then a linear "
                     "head on the last hidden state ({h} -> {o})",
    "rnn": "`nn.RNN(batch_first=True)` ({n} -> {h}, tanh); the last step's output feeds a "
           "linear head ({h} -> {o})",
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


def model_card(spec: ModelSpec, runtime: str, version: int, metrics: dict, report: dict,
               signed_by: str | None = None) -> str:
    name = triton_name(spec.name, runtime)
    filename = BACKENDS[runtime][3]
    in_name, out_name = io_names(spec, runtime)
    sizes = dict(n=spec.input_size, h=spec.hidden_size, o=spec.output_size, k=spec.output_size)
    axes = " and ".join(f"`{a}`" for a in dict.fromkeys(
        a for a in spec.input.shape + spec.output.shape if isinstance(a, str)))
    is_mse = metrics.get("metric") == "mse"
    better = "lower" if is_mse else "higher"
    check_first = "check the signature" if signed_by else \
        "check each file against its `manifest.json`"
    # Both runtimes, with paths from the repository root (or an unpacked release tarball).
    onnx_path = f"{triton_name(spec.name, 'onnx')}/{version}/{BACKENDS['onnx'][3]}"
    ts_path = f"{triton_name(spec.name, 'torchscript')}/{version}/{BACKENDS['torchscript'][3]}"
    load = ["import numpy as np, onnxruntime as ort, torch", "",
            f"x = np.zeros((4, 25, {spec.input_size}), dtype=np.{spec.dtype})  "
            "# (batch, seq, features): any batch, any length",
            f'session = ort.InferenceSession("{onnx_path}", providers=["CPUExecutionProvider"])',
            f'(y,) = session.run(["{spec.output_name}"], {{"{spec.input_name}": x}})'
            f"  # y: (4, {spec.output_size})", "",
            f'model = torch.jit.load("{ts_path}", map_location="cpu").eval()',
            "with torch.inference_mode():",
            f"    y = model(torch.from_numpy(x)).numpy()  # (4, {spec.output_size})"]
    io = [
        "## Inputs and outputs", "",
        f"{axes} are free in the files: any batch size and any sequence length. Through "
        f"Triton (`max_batch_size: {MAX_BATCH_SIZE}`, dynamic batching) a request, or a merged "
        "batch, holds at most that many; Triton dims leave the batch axis out (`-1`: any "
        "length).", "",
        "| | name (file) | name (Triton) | dtype | shape | Triton dims |", "|---|---|---|---|---|---|",
        f"| input | `{spec.input_name}` | `{in_name}` | {spec.dtype} | {_shape(spec.input.shape)} "
        f"| {dims(spec.input)} |",
        f"| output | `{spec.output_name}` | `{out_name}` | {spec.dtype} | "
        f"{_shape(spec.output.shape)} | {dims(spec.output)} |", ""]
    stream = runtime.startswith("stream_")
    if stream:
        from .stream import stream_card_sections
        io, load = stream_card_sections(spec, runtime, version)
    return "\n".join([
        f"# {name}, version {version}", "",
        f"`{spec.name}` {WHAT[spec.task].format(**sizes)}. Network: {HOW[spec.arch].format(**sizes)}.",
        f"This folder is version {version} of the Triton model `{name}` "
        f"(`{filename}`, platform `{BACKENDS[runtime][1]}`). It never changes: a new build is "
        "published as a new version.", "",
        *io,
        "## Training metrics (held-out test split)", "",
        f"| metric | model | baseline ({metrics.get('baseline_kind')}) |", "|---|---|---|",
        f"| {metrics.get('metric')} ({better} is better) | {metrics.get('test', float('nan')):.4f} "
        f"| {metrics.get('baseline', float('nan')):.4f} |", "",
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
