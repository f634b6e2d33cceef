"""The stand-in's OpenVINO runtime: what NVIDIA's openvino backend does with a config.

Not imported by the pipeline: copied beside model.py (`<backend dir>/openvino/`) and run in
Triton's python stub (.venv-serve, which has openvino). model.py builds it as it builds the
ONNX Runtime and TorchScript ones: `OpenVino(path, inputs, outputs, parameters)`, then
`run(feeds) -> [arrays in config output order]`.

It reads the config's `parameters` as triton-inference-server/openvino_backend does
(src/openvino.cc `ParseParameters`), so a config served here is served the same way there:
- `HINT_BF16: "YES"` compiles with `inference_precision=bf16` (any other value is refused);
  without it the precision is OpenVINO's default for the CPU: f32 here, but bf16 on a CPU
  with AVX512_BF16 or AMX (the backend has no parameter that asks for f32);
- `INFERENCE_NUM_THREADS`, `NUM_STREAMS`, `PERFORMANCE_HINT` as the backend maps them;
  other keys are ignored, as there.
A bf16 model on a CPU without bf16 units is refused at load, in one line (OpenVINO would
otherwise compile it in f32 without a word, and the served figures would not be the bf16
pair's): the CPU's OPTIMIZATION_CAPABILITIES must list BF16 and the compiled model must
report bf16 back. The mirror case too: a model without HINT_BF16 that OpenVINO compiled in
bf16 (its default on an AVX512_BF16/AMX CPU; the real backend would serve it so) is refused,
never bf16 answering under the f32 pair's name. (Nothing in the model can pin f32 either:
OpenVINO 2026.4 ignores `runtime_options` in an IR's rt_info and ONNX metadata_props for
INFERENCE_PRECISION_HINT.) The compiled precision is printed to the server log.
"""
import numpy as np
import triton_python_backend_utils as pb_utils

ENUMS = {"PERFORMANCE_HINT": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")}


def compile_properties(parameters: dict) -> dict:
    """The openvino backend's parameters -> OpenVINO compile properties; ValueError for a
    value the backend refuses."""
    properties = {}
    for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS"):
        value = parameters.get(key, "").strip()
        if value and key == "NUM_STREAMS" and value.upper() in ("AUTO", "NUMA"):
            properties[key] = value.upper()
        elif value:
            if not value.isdigit():
                raise ValueError(f"expected the parameter {key!r} to be a non-negative number, "
                                 f"got {value}")
            properties[key] = int(value)
    hint = parameters.get("PERFORMANCE_HINT", "").strip().upper()
    if hint:
        if hint not in ENUMS["PERFORMANCE_HINT"]:
            raise ValueError(f"expected the parameter 'PERFORMANCE_HINT' to be "
                             f"{'/'.join(ENUMS['PERFORMANCE_HINT'])}, got {hint}")
        properties["PERFORMANCE_HINT"] = hint
    bf16 = parameters.get("HINT_BF16", "").strip()
    if bf16:
        if bf16.lower() != "yes":
            raise ValueError(f"expected the parameter 'HINT_BF16' to be YES, got {bf16}")
        properties["INFERENCE_PRECISION_HINT"] = "bf16"
    return properties


class OpenVino:
    def __init__(self, path, inputs, outputs, parameters=None):
        try:
            import openvino as ov
        except ImportError:
            raise pb_utils.TritonModelException(
                "openvino is not installed in the serving environment; rebuild it with "
                "`make serve-env`") from None
        try:
            properties = compile_properties(parameters or {})
        except ValueError as exc:
            raise pb_utils.TritonModelException(str(exc)) from None
        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        wants_bf16 = properties.get("INFERENCE_PRECISION_HINT") == "bf16"
        if wants_bf16 and "BF16" not in capabilities:
            raise pb_utils.TritonModelException(
                f"HINT_BF16 asks for bf16, which this CPU cannot run (OpenVINO's CPU "
                f"capabilities: {', '.join(capabilities)}; no AVX512_BF16 or AMX); refused "
                "rather than served in f32 under a bf16 name")
        compiled = core.compile_model(path, "CPU", properties)
        self.precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if wants_bf16 and self.precision != "bf16":
            raise pb_utils.TritonModelException(
                f"HINT_BF16 asks for bf16; OpenVINO compiled it in {self.precision}")
        if not wants_bf16 and self.precision != "f32":
            raise pb_utils.TritonModelException(
                f"no HINT_BF16 (the f32 pair), but OpenVINO compiled it in {self.precision}, "
                "its default on this CPU (AVX512_BF16/AMX), and the openvino backend has no "
                "parameter that keeps f32; refused rather than served in "
                f"{self.precision} under an f32 name (deploy openvino:bf16 instead)")
        print(f"openvino stand-in: {path} compiled in {self.precision}", flush=True)
        self._check(compiled, inputs, outputs)
        self.request = compiled.create_infer_request()
        self.input_names = [n for n, _, _ in inputs]
        self.ports = [self._outputs[n] for n, _, _ in outputs]

    def _check(self, compiled, inputs, outputs):
        """The config's inputs are the model's, its outputs among the model's (by any of
        an output's names: OpenVINO folds an Identity into the node before it), same types."""
        graph_in = {p.get_any_name(): p for p in compiled.inputs}
        self._outputs = {name: p for p in compiled.outputs for name in p.get_names()}
        if set(graph_in) != {n for n, _, _ in inputs}:
            raise pb_utils.TritonModelException(
                f"config inputs {sorted(n for n, _, _ in inputs)} != model inputs {sorted(graph_in)}")
        for kind, declared, ports in (("input", inputs, graph_in),
                                      ("output", outputs, self._outputs)):
            for name, dtype, _ in declared:
                if name not in ports:
                    raise pb_utils.TritonModelException(
                        f"config {kind} {name!r} is not in the model (it has {sorted(ports)})")
                have = ports[name].get_element_type().to_dtype()
                if np.dtype(have) != np.dtype(dtype):
                    raise pb_utils.TritonModelException(
                        f"config {kind} {name!r} is {np.dtype(dtype)}, the model says {have}")

    def __call__(self, feeds):
        self.request.infer({n: np.ascontiguousarray(feeds[n]) for n in self.input_names})
        return [self.request.get_tensor(p).data.copy() for p in self.ports]
