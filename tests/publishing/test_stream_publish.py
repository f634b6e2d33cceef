"""Publishing the stream models: Triton configs (batched dims, lengths reshape, dynamic
batching), the version folders, and the model card's streaming snippet."""
import re

import numpy as np
import torch

from pipeline.specs import MODEL_NAMES

from .test_publish import build, key_of, onnx_io, publish, sha  # noqa: F401 (fixture)

STREAM = [("stream_onnx", "onnxruntime_onnx", "onnxruntime", "model_stream.onnx"),
          ("stream_torchscript", "pytorch_libtorch", "pytorch", "model_stream.pt")]


def test_stream_configs_parse_as_batched_triton_model_configs(build):  # noqa: F811
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    repo = build / "model_repository"
    for name in MODEL_NAMES:
        publish(build, name)
        graph = onnx_io(build / name / "model_stream.onnx")   # the reference: the graph
        for runtime, platform, backend, artifact in STREAM:
            config = text_format.Parse((repo / f"{name}_{runtime}" / "config.pbtxt").read_text(),
                                       pb.ModelConfig())
            assert (config.name, config.platform, config.backend) == \
                (f"{name}_{runtime}", platform, backend)
            assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
            assert not config.HasField("sequence_batching")     # state stays with the client
            tensors = [*config.input, *config.output]
            assert [t.data_type for t in tensors] == \
                [pb.TYPE_FP32, pb.TYPE_INT64, pb.TYPE_FP32, pb.TYPE_FP32, pb.TYPE_FP32]
            # dims: the graph's shape without its batch axis; lengths (batch,) -> [1] + reshape []
            assert [list(t.dims) for t in tensors] == [d[1:] or [1] for _, _, d in graph]
            assert [t.HasField("reshape") for t in tensors] == [False, True, False, False, False]
            assert list(config.input[1].reshape.shape) == []
            # both backends: the graph's names (pytorch backend: in forward's order)
            assert [t.name for t in tensors] == [n for n, _, _ in graph]
            folder = repo / f"{name}_{runtime}" / "1"
            served = "model.onnx" if runtime == "stream_onnx" else "model.pt"
            assert sha(folder / served) == sha(build / name / artifact)


def test_stream_card_snippet_streams(build, monkeypatch):  # noqa: F811
    publish(build)
    repo = build / "model_repository"
    card = (repo / "forecaster_stream_onnx" / "1" / "README.md").read_text()
    for needle in ["`lengths`", "`h_in`", "`h_out`", "dynamic_batching", "length buckets",
                   "stream_onnx", "**passed**"]:
        assert needle in card, needle
    assert "| stream_onnx |" in card and "| onnx |" not in card   # the stream rows only
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    monkeypatch.chdir(repo)
    scope = {}
    exec(code, scope)   # five steps, state carried
    # the same five steps in one call of the published TorchScript stream model
    x = np.stack([np.full(10, 0.1 * s, np.float32) for s in range(5)])[None]
    ts = torch.jit.load(str(repo / "forecaster_stream_torchscript/1/model.pt")).eval()
    y, h = ts(torch.from_numpy(x), torch.tensor([5]), torch.zeros(1, 20))
    np.testing.assert_allclose(scope["h"], h.detach().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(scope["y"], y.detach().numpy(), atol=1e-5, rtol=1e-5)


def test_signed_stream_version_runs_through_predict_version_dir(build, tmp_path):  # noqa: F811
    """A published, signed stream version is loaded as a stream model (after its signature
    check) by `predict --version-dir --stream`; without --stream it is a one-line error."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from tests.test_cli import one_line_error

    publish(build)
    folder = build / "model_repository" / "forecaster_stream_onnx" / "1"
    public = key_of(build).with_suffix(".pub")
    x = np.random.default_rng(0).standard_normal((2, 6, 10)).astype(np.float32)
    np.savez(tmp_path / "s.npz", input=x, lengths=np.array([6, 3]))
    np.save(tmp_path / "x.npy", x)
    base = ["predict", "--version-dir", str(folder), "--public-key", str(public)]
    result = CliRunner().invoke(cli, [*base, "--stream", "--input", str(tmp_path / "s.npz")])
    assert result.exit_code == 0, result.output
    ts = torch.jit.load(str(build / "forecaster" / "model_stream.pt")).eval()
    y, _ = ts(torch.from_numpy(x), torch.tensor([6, 3]), torch.zeros(2, 20))
    got = [float(line.split(": ")[1].split()[0]) for line in result.output.splitlines()
           if re.match(r"\d+: ", line)]
    np.testing.assert_allclose(got, y.detach().numpy()[:, 0], atol=1e-5, rtol=1e-5)
    one_line_error(CliRunner().invoke(cli, [*base, "--input", str(tmp_path / "x.npy")]),
                   "a stream model; give --stream")
