"""RNN pipeline: train the seed RNN models, export them to TorchScript and ONNX with dynamic
batch and sequence axes, verify the artifacts across runtimes, benchmark and publish them.

Stages talk only through files under `exported/<model>/`; see README.md.
"""
