"""Triton Inference Server model configs (`config.pbtxt`), generated from a `ModelSpec`.

    >>> from pipeline.specs import SPECS
    >>> print(config_pbtxt(SPECS["classifier"], "onnx"))

One Triton model per (model, runtime): `<model>_onnx` (onnxruntime backend, `model.onnx`)
and `<model>_torchscript` (pytorch backend, `model.pt`), and, for a model with stream
artifacts (every unidirectional one), the stream models `<model>_stream_onnx` /
`<model>_stream_torchscript`. Names, data type and dims come from the spec; every symbolic
axis ("batch", "seq") becomes -1, so any batch and any sequence length is accepted, as the
exported graphs were proven to do.

Choices, with their sources:
- `max_batch_size: 64` with `dynamic_batching`, decided by measurement (README, "Serving"):
  batch-1 requests from 16 clients answered ~1.2x faster than with `max_batch_size: 0`,
  because the batcher hands the backend every queued request of one shape at once and it
  runs them as one batch. With `max_batch_size > 0` Triton keeps the batch axis out of
  `dims` (`[-1, F]` -> `[O]`) and caps a request's batch, merged batches included, at it:
  64 is the largest batch `verify` checks. The batcher merges only requests of equal shape,
  so of one sequence length (ragged batching needs model support; a padded-length input
  would lift that).
- Tensor names: every Triton model of a spec uses the contract's names (`input`, `output`;
  stream: `input`, `lengths`, `h_in`[, `c_in`] -> `output`, `h_out`[, `c_out`]), so a client
  sends the same request to `<model>_onnx` and `<model>_torchscript`. ONNX: the graph's own
  names. TorchScript has no output names and the seeds' forward arguments are `inputs` /
  `x`, so NVIDIA's pytorch backend maps these names in config order ("strict config
  ordering": neither forward argument names nor `<name>__<index>`;
  triton-inference-server/pytorch_backend, src/libtorch.cc `GetNamingConvention`), and
  the config lists them in forward's order. Configs published before (`input__0`,
  `output__0`, ...) keep their names (a config never changes under published versions);
  both are served (backends/naming.py).

Stream models (model_stream.onnx / .pt, issue 13) take (input, lengths, h_in[, c_in]) and
return (output, h_out[, c_out]). They are served with `max_batch_size: 64` and
`dynamic_batching` too: Triton merges concurrent requests into one call, which is the point
of a per-row `lengths`. `lengths`, a scalar per row, is sent as `dims: [1]` and reshaped to
the graph's (batch,) by `reshape: { shape: [] }` (Triton needs non-empty dims); a state of
several layers is (batch, layers, H), dims `[layers, H]`. The dynamic batcher merges only
requests of equal shapes, so clients pad `input` to a few length buckets (e.g. 1, 8, 32,
128, 512 steps) and give the true length in `lengths`; padding never reaches the result.
State is carried by the client (the state outputs back as the state inputs; zeros start a
stream): Triton's implicit-state `sequence_batching` is implemented by NVIDIA's own
backends only, which cannot run here.
"""
from __future__ import annotations

from ..errors import PublishError
from ..specs import ModelSpec, TensorSpec

# runtime -> (Triton model-name suffix, platform, backend, file in the version folder).
# platform and backend are both given: Triton accepts either, and older releases need platform.
BACKENDS = {
    "onnx": ("onnx", "onnxruntime_onnx", "onnxruntime", "model.onnx"),
    "torchscript": ("torchscript", "pytorch_libtorch", "pytorch", "model.pt"),
    # the stream artifacts (model_stream.*), for models that have them (see `runtimes_for`)
    "stream_onnx": ("stream_onnx", "onnxruntime_onnx", "onnxruntime", "model.onnx"),
    "stream_torchscript": ("stream_torchscript", "pytorch_libtorch", "pytorch", "model.pt"),
}
# Deployed precision variants (publish --deploy, issue 23; publishing/deploy.py): one Triton
# model per pair, stateless and stream, each on the backend that runs it in a real
# deployment. The openvino backend has no platform name; its precision is a parameter.
DEPLOYED = {("onnx", "int8"): "onnx_int8", ("openvino", "fp32"): "openvino",
            ("openvino", "bf16"): "openvino_bf16", ("onnx", "fp16"): "onnx_fp16"}
OPENVINO_HINTS = {"openvino": "f32", "openvino_bf16": "bf16"}
for _key in DEPLOYED.values():
    _backend = ("", "openvino") if _key.startswith("openvino") else ("onnxruntime_onnx",
                                                                      "onnxruntime")
    # bf16 is OpenVINO IR (model.xml + model.bin): its rt_info keeps the split's f32 nodes
    _file = "model.xml" if _key == "openvino_bf16" else "model.onnx"
    BACKENDS[_key] = (_key, *_backend, _file)
    BACKENDS[f"stream_{_key}"] = (f"stream_{_key}", *_backend, _file)

# numpy / ONNX dtype name (ModelSpec.dtype) -> Triton DataType enum name (model_config.proto).
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int16": "TYPE_INT16",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16",
    "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
}

TRITON_CONFIG = "config.pbtxt"   # per Triton model, beside its version folders
MAX_BATCH_SIZE = 64   # see the module docstring; 0 would put the batch axis in `dims`


def triton_name(model: str, runtime: str) -> str:
    return f"{model}_{BACKENDS[runtime][0]}"


def runtimes_for(spec: ModelSpec) -> tuple[str, ...]:
    """The Triton models a spec publishes as: all four, or no stream ones (bidirectional)."""
    return tuple(r for r in list(BACKENDS)[:4] if spec.has_stream or not r.startswith("stream_"))


def dims(tensor: TensorSpec) -> list[int]:
    """Spec shape -> Triton dims: symbolic axis -> -1 (variable), fixed size -> itself; with
    `max_batch_size > 0` the leading batch axis is Triton's own and left out."""
    shape = tensor.shape[1:] if MAX_BATCH_SIZE > 0 and tensor.shape[:1] == ("batch",) else tensor.shape
    return [-1 if isinstance(axis, str) else int(axis) for axis in shape]


def io_names(spec: ModelSpec, runtime: str) -> tuple[str, str]:
    """(input name, output name) a Triton client uses: the contract's, for every runtime."""
    return spec.input_name, spec.output_name


def stream_io_names(spec: ModelSpec, runtime: str) -> tuple[list[str], list[str]]:
    """(input names, output names) of a stream model, in forward's order, for every runtime."""
    return [t.name for t in spec.stream_inputs], [t.name for t in spec.stream_outputs]


def legacy_config_pbtxt(spec: ModelSpec, runtime: str) -> str | None:
    """The config a TorchScript model was published with before the contract's names
    (`input__0`, ..., `output__0`, ...): a registry holding it keeps it; None for ONNX."""
    if "torchscript" not in runtime:
        return None
    text = config_pbtxt(spec, runtime)
    names = stream_io_names(spec, runtime) if runtime.startswith("stream_") else \
        tuple([n] for n in io_names(spec, runtime))
    for base, kind in ((spec.input_name, names[0]), (spec.output_name, names[1])):
        for i, name in enumerate(kind):
            text = text.replace(f'name: "{name}"\n', f'name: "{base}__{i}"\n')
    return text


def batched_dims(tensor: TensorSpec) -> tuple[list[int], bool]:
    """(dims without the batch axis, reshape to a scalar?): [] becomes [1] + reshape []."""
    rest = [-1 if isinstance(a, str) else int(a) for a in tensor.shape[1:]]
    return (rest, False) if rest else ([1], True)


def triton_dtype(tensor: TensorSpec) -> str:
    try:
        return TRITON_DTYPES[tensor.dtype]
    except KeyError:
        raise PublishError(f"{tensor.name}: dtype {tensor.dtype!r} has no Triton type") from None


def _tensor(name: str, tensor: TensorSpec, batched: bool = False) -> str:
    """One input/output entry; `batched`: a stream tensor (batch axis out, scalar reshaped)."""
    shape, reshape = batched_dims(tensor) if batched else (dims(tensor), False)
    lines = [f'    name: "{name}"', f"    data_type: {triton_dtype(tensor)}",
             f"    dims: [ {', '.join(map(str, shape))} ]"]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_pbtxt(spec: ModelSpec, runtime: str) -> str:
    """The text of `<registry>/<model>_<runtime>/config.pbtxt` (protobuf text format)."""
    if runtime.startswith("stream_"):
        return stream_config_pbtxt(spec, runtime)
    _, platform, backend, filename = BACKENDS[runtime]
    in_name, out_name = io_names(spec, runtime)
    inputs = [_tensor(in_name, spec.input)]
    if spec.takes_lengths:      # a packed forward's lengths (batch,): dims [1], reshaped
        inputs.append(_tensor(spec.lengths_name, spec.lengths, True))
    return "\n".join([
        f"# Generated by `python -m pipeline publish` from {spec.name}'s spec; do not edit:",
        "# published versions are immutable and must all match this config.",
        f'name: "{triton_name(spec.name, runtime)}"',
        *([f'platform: "{platform}"'] if platform else []),
        f'backend: "{backend}"',
        f'default_model_filename: "{filename}"',
        f"max_batch_size: {MAX_BATCH_SIZE}",
        *_parameters(runtime),
        "input [\n" + ",\n".join(inputs) + "\n]",
        f"output [\n{_tensor(out_name, spec.output)}\n]",
        *(["dynamic_batching {\n}"] if MAX_BATCH_SIZE > 0 else []),
        "",
    ])


def stream_config_pbtxt(spec: ModelSpec, runtime: str) -> str:
    _, platform, backend, filename = BACKENDS[runtime]
    ins, outs = stream_io_names(spec, runtime)
    return "\n".join([
        f"# Generated by `python -m pipeline publish` from {spec.name}'s spec; do not edit:",
        "# published versions are immutable and must all match this config.",
        # the seeds' published configs have this text: a config never changes under them
        "# Stream model: state is carried by the client (h_out -> h_in); pad input to a",
        "# length bucket and give each row's true length, so requests of one bucket batch.",
        f'name: "{triton_name(spec.name, runtime)}"',
        *([f'platform: "{platform}"'] if platform else []),
        f'backend: "{backend}"',
        f'default_model_filename: "{filename}"',
        f"max_batch_size: {MAX_BATCH_SIZE}",
        *_parameters(runtime),
        "input [\n" + ",\n".join(_tensor(n, t, True) for n, t in zip(ins, spec.stream_inputs))
        + "\n]",
        "output [\n" + ",\n".join(_tensor(n, t, True) for n, t in zip(outs, spec.stream_outputs))
        + "\n]",
        "dynamic_batching { }",
        "",
    ])


def _parameters(runtime: str) -> list[str]:
    """The openvino backend's parameters (its own keys: triton-inference-server/openvino_backend,
    src/openvino.cc `ParseParameters`): one thread and one stream, as verify and bench ran it,
    and `HINT_BF16: YES` for the bf16 pair. The backend has no key that asks for f32: the f32
    pair gets OpenVINO's default precision, f32 on a CPU without bf16 units (serve refuses it
    on one with them: serving/repository.py)."""
    if not runtime.removeprefix("stream_").startswith("openvino"):
        return []
    pairs = [("INFERENCE_NUM_THREADS", "1"), ("NUM_STREAMS", "1"), ("PERFORMANCE_HINT", "LATENCY")]
    if OPENVINO_HINTS.get(runtime.removeprefix("stream_")) == "bf16":
        pairs.append(("HINT_BF16", "YES"))
    return [f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in pairs]


def parse_config(text: str):
    """Parse config text as Triton's `ModelConfig`; None when tritonclient[grpc] is absent.

    Raises PublishError when the text is not a valid ModelConfig.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError):   # tritonclient without grpc raises RuntimeError
        return None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise PublishError(f"generated config.pbtxt is not a Triton ModelConfig: {exc}") from None
