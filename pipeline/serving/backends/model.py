"""Triton python-based backend that serves `backend: "onnxruntime"`, `"pytorch"` and `"openvino"`.

Not imported by the pipeline: `pipeline.serving.server` copies this one file to
`<backend dir>/onnxruntime/model.py`, `<backend dir>/pytorch/model.py` and
`<backend dir>/openvino/model.py` (naming.py and openvino_runtime.py beside it), and Triton's
python backend runs it in a stub process (in .venv-serve, numpy<2) for every model whose
config names one of those backends. It stands in for NVIDIA's C++ backends of the same
names, which are not on PyPI: same configs, same tensor names, same protocol. One runtime
class per backend, each `Runtime(path, inputs, outputs, parameters)` and
`run(feeds) -> [outputs in config order]`; openvino's is its own module
(openvino_runtime.py: the backend's parameters, the bf16 hint and its refusal).

Generic over the model config, nothing model-specific: every input and output the config
lists, any data type, `max_batch_size` 0 (one run per request, the batch axis is in `dims`)
or > 0 (requests the dynamic batcher hands over together are concatenated along the batch
axis, run once, and the outputs split back per request), and `reshape`
(Triton core applies an input's reshape before the backend sees it; an output's is applied
here). Checks at load time that the config's names are the artifact's own:
- onnxruntime: the config's inputs are exactly the graph's inputs, outputs among its outputs,
  data types equal;
- pytorch: NVIDIA's pytorch backend's rules (naming.py, copied beside this file): inputs by
  forward's argument names, by `<name>__<index>`, or in config order; outputs by index or in
  config order; as many inputs as forward takes;
- openvino: the config's inputs are the model's, outputs among its outputs' names, types equal.
Outputs are returned in the data type the config promises, or the request fails: a model that
returns another dtype is an error, never silently cast. A request with a negative value in an
integer input is refused: ONNX's Gather reads token ids -num..-1 from the end of the table (a
silent wrong answer), and ids >= num fail in the runtimes anyway.
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # naming.py, copied beside us
from naming import input_positions, output_positions  # noqa: E402
# Printed by finalize(); the stub's stdout is tritonserver's log, where `serve` counts these at
# a stop (pipeline/serving/server.py, FINALIZED: the same words).
FINALIZED = "rnn-pipeline backend finalized:"
ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
             "tensor(float16)": np.float16, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}


def _tensors(entries):
    """[(name, numpy dtype, output reshape or None)] of a config's input or output list."""
    return [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"]),
             [int(d) for d in t["reshape"]["shape"]] if "reshape" in t else None)
            for t in entries]


def _parameters(config):
    """{key: string_value} of the config's `parameters` (the openvino backend reads them)."""
    return {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


class OnnxRuntime:
    def __init__(self, path, inputs, outputs, parameters=None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        # One thread per run: these RNNs are tiny (a few KFLOP a step), and on a small CPU
        # several model instances and the server's own threads share the cores.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        graph_in = {i.name: i.type for i in self.session.get_inputs()}
        graph_out = {o.name: o.type for o in self.session.get_outputs()}
        if set(graph_in) != {n for n, _, _ in inputs}:
            raise pb_utils.TritonModelException(
                f"config inputs {sorted(n for n, _, _ in inputs)} != graph inputs {sorted(graph_in)}")
        for kind, declared, graph in (("input", inputs, graph_in), ("output", outputs, graph_out)):
            for name, dtype, _ in declared:
                if name not in graph:
                    raise pb_utils.TritonModelException(f"config {kind} {name!r} is not in the graph "
                                                        f"(it has {sorted(graph)})")
                if ORT_TYPES.get(graph[name]) is not np.dtype(dtype).type:
                    raise pb_utils.TritonModelException(
                        f"config {kind} {name!r} is {np.dtype(dtype)}, the graph says {graph[name]}")
        self.output_names = [n for n, _, _ in outputs]

    def __call__(self, feeds):
        return self.session.run(self.output_names, feeds)


class TorchScript:
    def __init__(self, path, inputs, outputs, parameters=None):
        import torch
        torch.set_num_threads(1)   # see OnnxRuntime
        self.torch = torch
        self.module = torch.jit.load(path, map_location="cpu").eval()
        arguments = [a.name for a in self.module.forward.schema.arguments[1:]]   # minus self
        names = [n for n, _, _ in inputs]
        try:
            positions = input_positions(names, arguments)
            self.output_positions = output_positions([n for n, _, _ in outputs])
        except ValueError as exc:
            raise pb_utils.TritonModelException(str(exc)) from None
        self.input_order = [name for _, name in sorted(zip(positions, names))]

    def __call__(self, feeds):
        with self.torch.inference_mode():
            result = self.module(*(self.torch.tensor(feeds[n]) for n in self.input_order))
        result = result if isinstance(result, (tuple, list)) else (result,)
        if max(self.output_positions) >= len(result):
            raise ValueError(f"forward returned {len(result)} outputs, the config lists "
                             f"{len(self.output_positions)}")
        return [result[i].numpy() for i in self.output_positions]


def _openvino(path, inputs, outputs, parameters):
    from openvino_runtime import OpenVino     # copied beside us; imports openvino itself
    return OpenVino(path, inputs, outputs, parameters)


RUNTIMES = {"onnxruntime": OnnxRuntime, "pytorch": TorchScript, "openvino": _openvino}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.inputs, self.outputs = _tensors(config["input"]), _tensors(config["output"])
        filename = config.get("default_model_filename") or {
            "onnxruntime": "model.onnx", "pytorch": "model.pt", "openvino": "model.xml"}[config["backend"]]
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        self.run = RUNTIMES[config["backend"]](path, self.inputs, self.outputs, _parameters(config))

    def finalize(self):
        """Unloading (a stop, or a reload): Triton calls this once no request of this instance
        is under way any more; the stub's own teardown after it takes seconds, and `serve`
        need not wait for that, so it is told here."""
        print(f"{FINALIZED} {self.name}", flush=True)

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                  for name, _, _ in self.inputs} for r in requests]
        responses = [None] * len(requests)
        for i, feed in enumerate(feeds):    # ONNX Gather wraps ids -num..-1: refuse, not guess
            negative = [n for n, v in feed.items()
                        if v.dtype.kind == "i" and v.size and v.min() < 0]
            if negative:
                message = (f"{self.name}: input {negative[0]!r} holds a negative value (token "
                           "ids and lengths are >= 0)")
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(message))
        feeds = [None if r is not None else f for r, f in zip(responses, feeds)]
        # Only requests whose non-batch shapes agree share a run (the dynamic batcher already
        # merges only equal shapes; grouping keeps this true whatever hands them over).
        groups = {}
        for i, feed in enumerate(feeds):
            if feed is None:
                continue
            key = tuple(feed[n].shape[1:] if self.batched else i for n, _, _ in self.inputs)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            try:
                results = self._run_group([feeds[i] for i in members])
            except Exception as exc:   # one failed run answers its requests with the error
                message = f"{self.name}: {type(exc).__name__}: {exc}"
                results = [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
                           for _ in members]
            for i, response in zip(members, results):
                responses[i] = response
        return responses

    def _run_group(self, feeds):
        if len(feeds) == 1:
            batch = feeds[0]
        else:   # (sum of request batches, ...) per input
            batch = {n: np.concatenate([f[n] for f in feeds]) for n, _, _ in self.inputs}
        outputs = self.run(batch)
        for (name, dtype, _), value in zip(self.outputs, outputs):
            if value.dtype != dtype:
                raise TypeError(f"output {name!r} came back {value.dtype}, the config says "
                                f"{np.dtype(dtype)}")
        sizes = [len(next(iter(f.values()))) for f in feeds] if self.batched else [None]
        responses, start = [], 0
        for size in sizes:
            tensors = []
            for (name, _, reshape), value in zip(self.outputs, outputs):
                part = value[start:start + size] if self.batched else value
                if reshape is not None:
                    part = part.reshape(([len(part)] if self.batched else []) + reshape)
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(part)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size or 0
        return responses
