"""Stage 2, export: TorchScript and ONNX artifacts with symbolic batch/seq axes, proved.

    stage.py        main(ExportConfig): export, self-check at other lengths, manifest last
    onnx_graph.py   model.onnx and model_stream.onnx written from the weights (operator / Scan)
    recurrent_graph.py  the recurrent layers in both forms, shared with chain_graph.py
    chain_graph.py  the same two files for a chain of layers (embeddings, norms, heads, ...)
    stream.py       the stream contract; its TorchScript form
    normalize.py    portability rules every ONNX file passes (typed values, strict shapes)
    facts.py        checker, signature against the spec, the graph's facts for the manifest
"""
from .stage import DEFAULT_OPSET, ExportConfig, main

__all__ = ["DEFAULT_OPSET", "ExportConfig", "main"]
