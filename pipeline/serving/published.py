"""A published Triton model as a client sees it, read from the repository's own files.

    model = open_published(Path("exported/model_repository"), "forecaster_stream_onnx")
    model.inputs, model.outputs         # Tensor(name, datatype, dtype, dims, reshape), config order
    model.state_pairs()                 # stream models: [(h_in, h_out), ...] fed back in order
    run = model.runner()                # the version's model file run in this process
    run({"input": x, "lengths": n, "h_in": h})   # -> {"output": ..., "h_out": ...}
    model.sample(rng, batch=1, seq=7)   # seeded feeds of the release's spec (token ids, lengths)

Everything comes from the files a consumer has: tensor names, types and dims from
`config.pbtxt` (Triton's ModelConfig, parsed with tritonclient's protobuf), the newest version
folder (its manifest checked first), and the tolerance its verification used
(`verification.json` in that folder). Nothing is looked up by model name, so any published
recurrent model is served and load-tested the same way. A stream model's contract
(`ModelSpec.stream_inputs` / `stream_outputs`): inputs (input, lengths, state...) and outputs
(output, state...), the i-th state output fed back as the i-th state input (one state for an
RNN or GRU, h and c for an LSTM).

The in-process runner is ONNX Runtime on model.onnx (the config's names are the graph's) or
TorchScript on model.pt (names mapped as NVIDIA's pytorch backend maps them: backends/naming.py),
or OpenVINO on model.xml (a bf16 model's IR, compiled with OpenVINO's default CPU precision).
Arrays are in the model's shapes: an input the config reshapes (a stream model's lengths,
`dims: [1]` + `reshape: []`) is (batch,) here and (batch, 1) on the wire (`Tensor.wire`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ServeError

@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str                    # Triton's wire type: "FP32", "INT64", ...
    dtype: str                       # numpy's
    dims: tuple[int, ...]            # as configured: without the batch axis when batched
    reshape: tuple[int, ...] | None  # what the model sees instead of dims

    def wire(self, value: np.ndarray) -> np.ndarray:
        """A batched model-shaped array as sent to Triton (its config dims)."""
        if self.reshape is None:
            return value
        return value.reshape((len(value),) + tuple(d if d >= 0 else -1 for d in self.dims))


@dataclass(frozen=True)
class Published:
    name: str
    version: int
    folder: Path                     # the version folder
    runtime: str                     # the release manifest's: onnx, torchscript, stream_onnx...
    filename: str
    max_batch_size: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    atol: float
    rtol: float
    spec: object = None              # the release's ModelSpec (covered.release_spec), or None
    # a precision variant: its answers' outputs are checked within its budget, a stream's
    # carried states not at all (answer_tolerance); fp32: every tensor within the tolerance
    variant: bool = False

    @property
    def stream(self) -> bool:
        return self.runtime.startswith("stream_")

    def state_pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(state input, state output) pairs of a stream model, in order."""
        pairs = list(zip(self.inputs[2:], self.outputs[1:]))
        if len(self.inputs) - 2 != len(self.outputs) - 1 or not pairs or any(
                i.dims != o.dims for i, o in pairs):
            raise ServeError(f"{self.name}: not a stream model's signature (input, lengths, "
                             "state... -> output, state... with matching state dims)")
        return pairs

    def sample(self, rng, batch: int, seq: int) -> dict:
        """Seeded model-shaped feeds of a stateless model, by config name: what the release's
        spec takes (inputs.model_feeds: float features, or token ids inside the vocabulary,
        and ragged lengths in 1..seq for a packed forward); standard normal floats without
        a spec."""
        if self.spec is None:
            return {t.name: rng.standard_normal((batch, *(seq if d < 0 else d for d in t.dims)))
                    .astype(t.dtype) for t in self.inputs}
        from ..inputs import model_feeds
        return self._named(self.inputs, model_feeds(self.spec, rng, batch, seq))

    def sample_steps(self, rng, batch: int, steps: int) -> np.ndarray:
        """A stream model's `input` for `steps` one-step requests: (steps, batch, 1, ...)."""
        data = self.inputs[0]
        if self.spec is None:
            return rng.standard_normal((steps, batch, 1, *data.dims[1:])).astype(data.dtype)
        from ..inputs import sample_input
        x = sample_input(self.spec, rng, batch, steps)       # (batch, steps[, F])
        return self._named((data,), {"input": np.moveaxis(x, 1, 0)[:, :, None]})[data.name]

    def _named(self, tensors, drawn: dict) -> dict:
        """Drawn arrays (contract order) under the config's names, dtypes held to it."""
        if len(drawn) != len(tensors) or any(t.dtype != v.dtype.name
                                             for t, v in zip(tensors, drawn.values())):
            raise ServeError(f"{self.name}: the config's inputs "
                             f"{[(t.name, t.dtype) for t in tensors]} are not its spec's "
                             f"{[(n, v.dtype.name) for n, v in drawn.items()]}")
        return {t.name: v for t, v in zip(tensors, drawn.values())}

    def runner(self):
        """A function {input name: model-shaped array} -> {output name: array}."""
        path = str(self.folder / self.filename)
        names_out = [t.name for t in self.outputs]
        if self.filename.endswith(".xml"):    # OpenVINO IR (bf16): as the openvino backend runs it
            import openvino as ov
            compiled = ov.Core().compile_model(path, "CPU")
            return lambda feeds: {n: compiled(feeds)[n] for n in names_out}
        if self.filename.endswith(".onnx"):
            import onnxruntime as ort
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            return lambda feeds: dict(zip(names_out, session.run(names_out, feeds)))
        import torch
        from .backends.naming import input_positions, output_positions
        module = torch.jit.load(path, map_location="cpu").eval()
        arguments = [a.name for a in module.forward.schema.arguments[1:]]    # minus self
        try:
            at = input_positions([t.name for t in self.inputs], arguments)
            positions = output_positions(names_out)
        except ValueError as exc:
            raise ServeError(f"{self.name}: {exc}") from None
        order = [t for _, t in sorted(zip(at, self.inputs), key=lambda pair: pair[0])]

        def run(feeds):
            with torch.inference_mode():
                result = module(*(torch.from_numpy(np.ascontiguousarray(feeds[t.name]))
                                  for t in order))
            result = result if isinstance(result, (tuple, list)) else (result,)
            return {name: result[i].numpy() for name, i in zip(names_out, positions)}
        return run


def _tensors(entries: list[dict]) -> tuple[Tensor, ...]:
    found = []
    for t in entries:
        datatype = t.get("data_type", "TYPE_FP32").removeprefix("TYPE_")
        dtype = {"FP32": "float32", "FP64": "float64", "FP16": "float16", "BOOL": "bool"}.get(
            datatype, datatype.lower())
        reshape = tuple(int(d) for d in t["reshape"].get("shape", [])) if "reshape" in t else None
        found.append(Tensor(t["name"], datatype, dtype, tuple(int(d) for d in t.get("dims", [])),
                            reshape))
    return tuple(found)


def open_published(registry: Path, model: str) -> Published:
    """The newest published version of `model`, its manifest checked."""
    from google.protobuf.json_format import MessageToDict

    from ..manifest import check_manifest
    from ..publishing.covered import release_spec
    from ..publishing.publish import VERIFICATION
    from ..publishing.triton import TRITON_CONFIG, parse_config
    from ..publishing.versions import VERSION_DIR

    folder = Path(registry) / model
    versions = sorted(int(v.name) for v in folder.glob("*") if VERSION_DIR.fullmatch(v.name))
    if not versions or not (folder / TRITON_CONFIG).is_file():
        raise ServeError(f"{folder}: no published version to check answers against")
    version_dir = folder / str(versions[-1])
    manifest = check_manifest(version_dir)
    parsed = parse_config((folder / TRITON_CONFIG).read_text())
    if parsed is None:
        raise ServeError("reading config.pbtxt needs tritonclient[grpc] (pip install '.[dev]')")
    config = MessageToDict(parsed, preserving_proto_field_name=True)
    atol, rtol, variant = answer_tolerance(
        json.loads((version_dir / VERIFICATION).read_text()), manifest["runtime"])
    return Published(model, versions[-1], version_dir, manifest["runtime"],
                     config.get("default_model_filename") or manifest_file(manifest),
                     int(config.get("max_batch_size", 0)), _tensors(config["input"]),
                     _tensors(config["output"]), atol, rtol, release_spec(manifest), variant)


def answer_tolerance(report: dict, runtime: str) -> tuple[float, float, bool]:
    """(atol, rtol, variant?) a served answer's output must meet against the same file run
    here: the fp32 tolerance verify used; for a precision variant its accuracy budget. An
    int8 file's answer depends on the batch Triton's dynamic batcher built (ORT quantizes a
    call's activations with one scale: 0.36% of std between a row alone and in a batch of
    8, forecaster), and each answer is within the budget of eager fp32, so two of them are
    within twice the budget of each other (max_rel_std x the std verify measured). A
    variant stream's carried states are not compared: the budget bounds outputs only, and a
    bf16 LSTM's c stepped one call at a time moves up to 2.5% of its std from the whole-
    sequence run (deepar, 64 steps) while the outputs stay within 0.2%; a state lost or
    crossed between clients still shows, in the next steps' outputs."""
    from ..publishing.deploy import pair_of
    served, precision = pair_of(runtime)
    entry = None if precision == "fp32" else next(
        (e for e in report.get("precisions", [])
         if (e["runtime"], e["precision"]) == (served, precision)), None)
    if entry is None:
        tolerance = report["tolerance"]
        return float(tolerance["atol"]), float(tolerance["rtol"]), False
    return 2 * entry["budget"]["max_rel_std"] * entry["figures"]["std"], 0.0, True


def manifest_file(manifest: dict) -> str:
    """The model file of a release manifest: the one that is not its metadata."""
    return next(n for n in manifest["files"] if n.endswith((".onnx", ".pt", ".xml")))
