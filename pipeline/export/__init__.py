"""Stage 2, export: TorchScript and ONNX artifacts with symbolic batch/seq axes, proved.

    stage.py        main(ExportConfig): export, self-check at other lengths, manifest last
    onnx_graph.py   the ONNX export form (RNN op / Scan branches) and the graph's facts
"""
from .stage import DEFAULT_OPSET, ExportConfig, main

__all__ = ["DEFAULT_OPSET", "ExportConfig", "main"]
