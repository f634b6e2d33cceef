"""Each layer kind's ONNX nodes against its own torch module (the independent reference),
in ONNX Runtime and the ONNX reference evaluator; and the chain's spec on disk."""
import json

import numpy as np
import pytest
import torch

from pipeline.families.graph import GraphBuilder, value_info
from pipeline.layers import (ACTIVATIONS, Activation, Dropout, Embedding, LayerNorm, Linear,
                             Readout, Recurrent, layer_from_dict)
from pipeline.layers.modules import ReadoutModule
from pipeline.specs import SPECS, ModelSpec, model_spec_from_dict, to_dict

STATELESS = [Linear(6, 4), Linear(6, 3, bias=False), LayerNorm(6), LayerNorm(6, 1e-3, False),
             LayerNorm(6, bias=False), Dropout(0.3), Activation("leaky_relu", 0.2),
             Activation("elu", 0.7), *(Activation(fn) for fn in ACTIVATIONS)]


def _run(b, x_name, out, feeds, shapes):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    b.op("Identity", [out], ["y"])
    model = b.model([value_info(n, shape, feeds[n].dtype) for n, shape in shapes.items()],
                    [value_info("y")])
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    ref = ReferenceEvaluator(model).run(None, feeds)[0]
    return got, ref


@pytest.mark.parametrize("layer", STATELESS, ids=lambda layer: layer.describe())
def test_stateless_layer_onnx_equals_its_torch_module(layer):
    torch.manual_seed(0)
    module = layer.torch_module().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
    x = (3 * np.random.default_rng(0).standard_normal((2, 5, 6))).astype(np.float32)
    with torch.inference_mode():
        want = module(torch.from_numpy(x)).numpy()
    b = GraphBuilder()
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    got, ref = _run(b, "x", layer.onnx(b, "x", weights), {"x": x}, {"x": ["b", "s", 6]})
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(ref, want, atol=2e-6, rtol=1e-5)


def test_embedding_is_a_gather_of_its_rows():
    layer = Embedding(11, 4, padding_idx=0)
    module = layer.torch_module().eval()
    ids = np.random.default_rng(1).integers(0, 11, (3, 7)).astype(np.int64)
    b = GraphBuilder()
    got, ref = _run(b, "x", layer.onnx(b, "x", {"weight": module.weight.detach().numpy()}),
                    {"x": ids}, {"x": ["b", "s"]})
    np.testing.assert_array_equal(got, module(torch.from_numpy(ids)).detach().numpy())


@pytest.mark.parametrize("how", ["last_step", "final_state", "final_state_both", "mean", "max"])
def test_readouts_equal_their_torch_reading_of_a_bidirectional_output(how):
    """A biGRU's per-step output read as torch reads it (out[:, -1], h_n[-1], ...)."""
    gru = torch.nn.GRU(3, 4, bidirectional=True, batch_first=True)
    x = torch.randn(3, 6, 3)
    with torch.inference_mode():
        out, h = gru(x)
    want = {"last_step": out[:, -1], "final_state": h[-1], "final_state_both":
            torch.cat((h[-2], h[-1]), 1), "mean": out.mean(1), "max": out.amax(1)}[how]
    layer = Readout(how, 8, 2)
    module = layer.torch_module()
    assert isinstance(module, ReadoutModule)
    torch.testing.assert_close(module(out, torch.full((3,), 6)), want)
    b = GraphBuilder()
    got, ref = _run(b, "x", layer.onnx(b, "x", {}), {"x": out.numpy()}, {"x": ["b", "s", 8]})
    np.testing.assert_allclose(got, want.numpy(), atol=1e-7)
    np.testing.assert_allclose(ref, want.numpy(), atol=1e-7)


@pytest.mark.parametrize("how", ["last_step", "final_state"])
def test_one_way_readouts_with_lengths_read_each_rows_own_final_state(how):
    """A packed forward's h_n: each row's state after its own last valid step."""
    gru = torch.nn.GRU(3, 4, batch_first=True)
    x, lens = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    with torch.inference_mode():
        out, _ = gru(x)
        _, h = gru(torch.nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True,
                                                           enforce_sorted=False))
    layer = Readout(how, 4)
    torch.testing.assert_close(layer.torch_module()(out, lens), h[-1])
    b = GraphBuilder()
    got, ref = _run(b, "x", layer.onnx(b, "x", {}, "n"), {"x": out.numpy(), "n": lens.numpy()},
                    {"x": ["b", "s", 4], "n": ["b"]})
    np.testing.assert_allclose(got, h[-1].numpy(), atol=1e-6)
    np.testing.assert_allclose(ref, h[-1].numpy(), atol=1e-6)


def test_seed_configs_are_written_as_before_and_chains_round_trip():
    for spec in SPECS.values():
        data = to_dict(spec)
        assert "layers" not in data and "input_kind" not in data      # config.json unchanged
        assert model_spec_from_dict(json.loads(json.dumps(data))) == spec
        assert [layer.kind for layer in spec.chain] == ["recurrent", "readout", "linear"]
    chain = ModelSpec("tagger", "classification", 50, 16, 5, cell="lstm", input_kind="tokens",
                      layers=(Embedding(50, 12), Recurrent("lstm", "stack", 12, 16),
                              Linear(16, 5), Activation("log_softmax")))
    back = model_spec_from_dict(json.loads(json.dumps(to_dict(chain))))
    assert back == chain and back.output.shape == ("batch", "seq", 5)
    assert back.input.dtype == "int64" and back.input.shape == ("batch", "seq")
    assert [t.name for t in back.stream_inputs] == ["input", "lengths", "h_in", "c_in"]
    with pytest.raises(ValueError, match="unknown layer kind"):
        layer_from_dict({"kind": "conv1d"})
    with pytest.raises(ValueError, match="takes 13 features, gets 12"):
        ModelSpec("bad", "regression", 50, 16, 5, cell="lstm", input_kind="tokens",
                  layers=(Embedding(50, 12), Recurrent("lstm", "stack", 13, 16), Linear(16, 5)))


def test_every_stream_state_count_has_a_torchscript_form_and_more_say_why():
    """Chains of k one-layer LSTMs (2k states): up to MAX_STREAM_STATES a stream module that
    TorchScript compiles and that takes input, lengths and each state positionally; past it,
    no stream form and one line that says why."""
    from pipeline.layers.chain import MAX_STREAM_STATES
    from pipeline.network import build_chain, chain_stream

    def lstms(k):
        return ModelSpec(f"lstm{k}", "regression", 3, 4, 2, cell="lstm",
                         layers=(*(Recurrent("lstm", "stack", 3 if i == 0 else 4, 4)
                                   for i in range(k)), Linear(4, 2)))
    for k in range(1, MAX_STREAM_STATES // 2 + 1):
        spec = lstms(k)
        assert spec.has_stream and len(spec.state_names) == 2 * k
        scripted = torch.jit.script(chain_stream(build_chain(spec).eval(), spec))
        states = [torch.zeros(2, 4) for _ in range(2 * k)]
        result = scripted(torch.randn(2, 3, 3), torch.tensor([3, 1]), *states)
        assert len(result) == 1 + 2 * k and result[0].shape == (2, 3, 2)
    spec = lstms(MAX_STREAM_STATES // 2 + 1)
    assert not spec.has_stream
    assert spec.stream_refusal == f"more than {MAX_STREAM_STATES} state tensors"
