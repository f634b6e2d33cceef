"""bf16: the fp32 files compiled by OpenVINO with INFERENCE_PRECISION_HINT=bf16.

No file of its own: model.onnx and model_stream.onnx are read by OpenVINO's ONNX frontend
and its CPU plugin runs the matrix products in bfloat16 (8 bits of mantissa) on the
AVX512_BF16 / AMX units, accumulating in float32. The runner records the precision the
compiled model reports back; a CPU without bf16 units gets f32 back, and that pair is then
not bf16 at all (`unavailable` says so before anything is timed).

bf16 in ONNX Runtime was tried too: onnxruntime 1.31.1's CPU provider has no bfloat16 kernel
for MatMul, Gemm, Sigmoid, Tanh, Add or Mul ("NOT_IMPLEMENTED: Could not find an
implementation"), and the ONNX LSTM operator does not take bfloat16 at all (its
fastmath bf16 GEMM option is for ARM64 only), so a bf16 file of these graphs does not load:
ORT is not a bf16 runtime on x86.
"""
from __future__ import annotations

from . import Variant


class BF16(Variant):
    name, runtimes = "bf16", ("openvino",)
    summary = "the fp32 file compiled by OpenVINO with the bf16 inference hint"

    def artifact(self, entry, stream):
        return entry.get("runs", {}).get("stream" if stream else "model")

    def load(self, runtime, spec, path, threads=None, stream=False):
        from ..errors import PipelineError
        from ..runtimes.openvino import load_openvino
        runner = load_openvino(spec, path, threads, hint="bf16")
        if runner.precision != "bfloat16":     # the plugin decides; a CPU without bf16 units
            raise PipelineError(f"{path}: OpenVINO compiled it in {runner.precision}, not bf16")
        return runner

    def unavailable(self, runtime):
        reason = super().unavailable(runtime)
        if reason is None and not cpu_has_bf16():
            return "this CPU has no bf16 units (AVX512_BF16 or AMX)"
        return reason


def cpu_has_bf16() -> bool:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16 = BF16()
