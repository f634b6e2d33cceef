"""Serving: a real tritonserver on the published repository (server.py), its python-based
onnxruntime/pytorch backends (backends/model.py, run by tritonserver, not imported here), the
repository pre-flight (repository.py) and the load test (loadtest.py)."""
