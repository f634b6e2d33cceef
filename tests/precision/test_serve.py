"""Deployed variants served by the stand-in backends (one tritonserver start for the module):
the user's 2-layer LSTM as `lstm2_onnx_int8` (onnxruntime backend, the int8 file) and its
OpenVINO pair, each with its stream twin, answer over HTTP and gRPC within the budget verify
recorded, against the user's own eager fp32 module.

Which OpenVINO pair follows the CPU, as a real deployment must: Triton's openvino backend
has no parameter that asks for f32 (only HINT_BF16), and OpenVINO's default on a CPU with
AVX512_BF16/AMX is bf16. So on a bf16 CPU `lstm2_openvino_bf16` (HINT_BF16: YES) is served
and shown to compute in bf16, and an f32 openvino model is refused in one line by `serve`
and by the stand-in; on a CPU without bf16 units `lstm2_openvino` (f32) is served, and a
bf16 model is refused in both places. The preflight rule itself is checked for both kinds
of CPU on any CPU."""
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.errors import ServeError
from pipeline.precision.bf16 import cpu_has_bf16
from pipeline.publishing.publish import PublishConfig
from pipeline.publishing.publish import main as publish
from pipeline.publishing.signing import keygen
from pipeline.publishing.triton import config_pbtxt
from tests.serving.conftest import start, stop_and_check
from tests.serving.test_faults import FREE_PORTS
from tests.serving.test_imported import ask
from tests.serving.test_serve import PROTOCOLS, client

from . import models
from .conftest import write_choice

BF16 = cpu_has_bf16()
OPENVINO = "openvino_bf16" if BF16 else "openvino"     # the pair this CPU serves as verified
SERVED = ("onnx_int8", OPENVINO)     # Triton model suffixes, each with a stream_ twin
no_bf16 = pytest.mark.skipif(BF16, reason="this CPU runs bf16: it is served there")
has_bf16 = pytest.mark.skipif(not BF16, reason="no bf16 units: f32 is served here")


@pytest.fixture(scope="module")
def deployed(users, tmp_path_factory):
    """The deployed pairs of lstm2 published (signed) by `publish --deploy best`, the four
    Triton models alone in the served repository, one server."""
    out, _ = users
    tmp = tmp_path_factory.mktemp("serve-variants")
    keys = keygen(tmp / "keys")
    write_choice(out / "lstm2", {"1x50": {"runtime": "onnx", "precision": "int8"},
                                 "64x200": {"runtime": "openvino",
                                            "precision": "bf16" if BF16 else "fp32"}})
    publish(PublishConfig("lstm2", out, tmp / "published", signing_key=keys["private"],
                          deploy="best"), log=lambda s: None)
    registry = tmp / "registry"
    for key in SERVED:
        for name in (f"lstm2_{key}", f"lstm2_stream_{key}"):
            shutil.copytree(tmp / "published" / name, registry / name)
    server = start(registry, public_key=keys["public"])
    yield {"server": server, "registry": registry, "tmp": tmp}
    stop_and_check(server)


def recorded_budget(registry, name):
    """The budget verify recorded for the pair, read from the served version's own files."""
    report = json.loads((registry / name / "1" / "verification.json").read_text())
    return report["budget"]


def within(got, want, budget, what):
    err = np.abs(got - want).max() / want.std()
    labels = (got.argmax(-1) == want.argmax(-1)).mean()
    assert err <= budget["max_rel_std"], f"{what}: max error {err:.2%} of std"
    assert labels >= budget["label_agree"], f"{what}: labels agree on {labels:.1%}"
    return err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_variants_answer_within_the_recorded_budget(deployed, protocol):
    x = np.random.default_rng(5).standard_normal((64, 30, models.FEATURES)).astype(np.float32)
    with torch.inference_mode():        # the user's own module, fp32: the reference
        want = models.lstm2()(torch.from_numpy(x)).numpy()
    module, triton = client(deployed["server"], protocol)
    errors = {}
    with triton:
        for key in SERVED:
            got = ask(module, triton, "lstm2", key, {"input": x}, ["output"])["output"]
            budget = recorded_budget(deployed["registry"], f"lstm2_{key}")
            errors[key] = within(got, want, budget, key)
            # the stream twin: 3 calls of 10 steps, (h, c) carried by the client
            state = {n: np.zeros((64, 2, models.HIDDEN), np.float32) for n in ("h_in", "c_in")}
            for t in range(0, 30, 10):
                feeds = {"input": x[:, t:t + 10], "lengths": np.full(64, 10, np.int64), **state}
                r = ask(module, triton, "lstm2", f"stream_{key}", feeds,
                        ["output", "h_out", "c_out"])
                state = {"h_in": r["h_out"], "c_in": r["c_out"]}
            within(r["output"], want, budget, f"stream_{key}")
    log = deployed["server"].log_text()
    if BF16:     # really bf16: 8-bit mantissas put it far above f32's ~3e-7 of std
        assert errors[OPENVINO] > 1e-4
        assert "compiled in bf16" in log and "compiled in f32" not in log
    else:        # not the same numbers: the int8 file really is another computation than f32
        assert errors["onnx_int8"] > 10 * errors[OPENVINO]
        assert "compiled in f32" in log and "compiled in bf16" not in log


def test_preflight_precision_rule_for_each_kind_of_cpu():
    """check_precision for both kinds of CPU, whichever this one is."""
    from pipeline.serving.repository import check_precision
    from pipeline.specs import SPECS
    spec = SPECS["classifier"]
    f32, bf16 = config_pbtxt(spec, "openvino"), config_pbtxt(spec, "openvino_bf16")
    check_precision("m_openvino", f32, cpu_bf16=False)
    check_precision("m_openvino_bf16", bf16, cpu_bf16=True)
    for text in (f32, bf16):
        check_precision("m_onnx", config_pbtxt(spec, "onnx"), cpu_bf16=text is f32)
    with pytest.raises(ServeError, match="m_openvino: an f32 OpenVINO model, which OpenVINO "
                                         "compiles in bf16 on this CPU"):
        check_precision("m_openvino", f32, cpu_bf16=True)
    with pytest.raises(ServeError, match="m_openvino_bf16: HINT_BF16 asks for bf16, which "
                                         "this CPU cannot run"):
        check_precision("m_openvino_bf16", bf16, cpu_bf16=False)


def _config(folder, key, filename):
    """The config of the `key` pair for a copied folder, naming the file the copy holds
    (bf16 is served as OpenVINO IR, model.xml; f32 OpenVINO as model.onnx)."""
    text = config_pbtxt(_spec(folder), key)
    return text.replace("model.onnx", filename).replace("model.xml", filename)


@has_bf16
def test_serve_refuses_f32_openvino_on_this_cpu_in_one_line(deployed):
    """An f32 openvino model where OpenVINO would compile it in bf16: one line, nothing
    starts."""
    registry = deployed["tmp"] / "with-f32"
    shutil.copytree(deployed["registry"], registry)
    f32 = registry / "lstm2_openvino"
    shutil.copytree(registry / "lstm2_openvino_bf16", f32)
    (f32 / "config.pbtxt").write_text(_config(f32, "openvino", "model.xml"))
    r = CliRunner().invoke(cli, ["serve", *FREE_PORTS, "--registry", str(registry)])
    assert r.exit_code == 1, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "lstm2_openvino: an f32 OpenVINO model, which OpenVINO compiles in bf16" in r.output


@has_bf16
def test_openvino_stand_in_refuses_f32_on_this_cpu(deployed):
    """Loaded behind preflight's back, the backend itself refuses the f32 pair it would
    compile in bf16: never bf16 answering under the f32 pair's name."""
    server, registry = deployed["server"], deployed["registry"]
    f32 = registry / "lstm2_openvino"
    shutil.copytree(registry / "lstm2_openvino_bf16", f32)
    (f32 / "config.pbtxt").write_text(_config(f32, "openvino", "model.xml"))
    try:
        with pytest.raises(ServeError, match=r"no HINT_BF16 \(the f32 pair\), but OpenVINO "
                                             "compiled it in bf16"):
            server._model_control("load", f32.name)
        assert not server.model_ready(f32.name)
        assert server.model_ready("lstm2_openvino_bf16")     # the others keep serving
    finally:
        shutil.rmtree(f32)


@no_bf16
def test_serve_refuses_bf16_on_this_cpu_in_one_line(deployed):
    """A bf16 model in the repository: serve says why in one line, starts nothing."""
    registry = deployed["tmp"] / "with-bf16"
    shutil.copytree(deployed["registry"], registry)
    bf16 = registry / "lstm2_openvino_bf16"
    shutil.copytree(registry / "lstm2_openvino", bf16)
    spec = _spec(bf16)
    (bf16 / "config.pbtxt").write_text(_config(bf16, "openvino_bf16", "model.onnx"))
    r = CliRunner().invoke(cli, ["serve", *FREE_PORTS, "--registry", str(registry)])
    assert r.exit_code == 1, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "lstm2_openvino_bf16: HINT_BF16 asks for bf16, which this CPU cannot run" in r.output


@no_bf16
def test_openvino_stand_in_refuses_bf16_on_this_cpu(deployed):
    """Loaded behind preflight's back (the restricted repository API), the backend itself
    refuses: never an f32 model answering under a bf16 name."""
    server, registry = deployed["server"], deployed["registry"]
    bf16 = registry / "lstm2_openvino_bf16"
    shutil.copytree(registry / "lstm2_openvino", bf16)
    (bf16 / "config.pbtxt").write_text(_config(bf16, "openvino_bf16", "model.onnx"))
    try:
        with pytest.raises(ServeError, match="HINT_BF16 asks for bf16, which this CPU cannot "
                                             r"run \(OpenVINO's CPU capabilities: FP32"):
            server._model_control("load", bf16.name)
        assert not server.model_ready(bf16.name)
        assert server.model_ready("lstm2_openvino")       # the others keep serving
    finally:
        shutil.rmtree(bf16)


def _spec(folder):
    from pipeline.publishing.covered import release_spec
    return release_spec(json.loads((folder / "1" / "manifest.json").read_text()))


def test_preflight_int8_rule_for_each_kind_of_cpu(users, tmp_path):
    """An int8 file with int8 (s8) weights is refused where the CPU has no VNNI, whichever
    CPU this is; a uint8 one is served on both, and a non-int8 model is never opened."""
    import onnx

    from pipeline.precision import int8
    from pipeline.serving.repository import check_int8
    out, _ = users
    fp32 = onnx.load(str(out / "lstm2" / "model.onnx"))
    for weights in ("s8", "u8"):
        path = tmp_path / weights / "1" / "model.onnx"
        path.parent.mkdir(parents=True)
        onnx.save(int8.quantize(fp32, weights), str(path))
        assert int8.signed_weights(path) == (weights == "s8")
        check_int8("lstm2_onnx_int8", [path], vnni=True)
    check_int8("lstm2_onnx_int8", [tmp_path / "u8" / "1" / "model.onnx"], vnni=False)
    with pytest.raises(ServeError, match="int8 weights.*no VNNI") as exc:
        check_int8("lstm2_onnx_int8", [tmp_path / "s8" / "1" / "model.onnx"], vnni=False)
    assert "\n" not in str(exc.value)
    check_int8("lstm2_onnx", [tmp_path / "s8" / "1" / "model.onnx"], vnni=False)  # not int8
