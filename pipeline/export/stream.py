"""The stream artifacts: a stateful, length-aware form of each unidirectional model.

    model_stream.onnx / model_stream.pt:
      forward(input (batch, seq, F), lengths (batch,) int64, h_in[, c_in])
        -> (output (batch, O), h_out[, c_out])

State tensors are batch-major, (batch, H) for one layer (the seeds' contract) and (batch,
layers, H) for more, because Triton's dynamic batcher concatenates requests on dim 0; an
LSTM carries c beside h. Row i runs the recurrence from its state over its first
`lengths[i]` steps (1 <= length <= seq; the padding after them is never read into the
result), the state outputs are every layer's state after its last valid step and
`output[i]` the head on the top layer's h. Feeding the state outputs back as the inputs
continues a stream; zeros start one. Names and shapes come from the spec
(`ModelSpec.stream_inputs` / `stream_outputs`). A bidirectional model has no stream form
(its backward direction needs the future): `export` says so and writes the others.

ONNX form: see onnx_graph.py (`build_stream_onnx`): the native operator over all steps
from the given state and each layer's h gathered at lengths - 1 (GatherElements), or the
Scan emitting every state per step and the same gather. The RNN operators' own
`sequence_lens` is not portable (OpenVINO silently ignores it, tract refuses a
non-constant one, onnxruntime returns Y_h = 0 for a length-0 row). Nothing clamps the
lengths in the graph (tract rejects the clamp): callers validate them first
(`pipeline.contract.check_stream_feeds`); a length of 0 would read index -1 = the last step.

TorchScript form: the family's stream module (pipeline/families): a stack runs on a
packed sequence (pack_padded_sequence), so every layer stops at each row's own length; a
cell loop masks the update of rows past their length. It raises on bad lengths or state
shapes itself, so a served TorchScript model refuses them.

The eager reference both are checked against is `pipeline.families.StreamReference`: row
by row, the trained model's own layers on the unpadded sequence from its state.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..families import family
from ..specs import ModelSpec
from .onnx_graph import export_stream_onnx

__all__ = ["export_stream_onnx", "export_stream_torchscript"]


def export_stream_torchscript(model, spec: ModelSpec, path: Path) -> None:
    import torch

    from .stage import save_scripted
    if spec.layers:
        from ..network import chain_stream
        module = chain_stream(model, spec).eval()
    else:
        module = family(spec).stream_module(model, spec).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # see stage.export_torchscript
        save_scripted(torch.jit.script(module), path)
