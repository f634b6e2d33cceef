"""A consumer's whole path (issue 14's good case, end to end): the publisher's release
tarballs unpacked elsewhere, `verify-release` on what came out, then tritonserver serving
it with the publisher's public key and answering like the trained model."""
import numpy as np
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.publishing.release import extract_release
from pipeline.runtimes import load_runner
from pipeline.specs import MODEL_NAMES, SPECS
from tests.serving.conftest import start, stop_and_check
from tests.serving.test_serve import RUNTIMES, client, infer, names


def test_unpacked_signed_release_is_verified_then_served(published, tmp_path):
    registry = tmp_path / "consumer" / "models"
    for model in MODEL_NAMES:      # version 1: what the `published` fixture built
        extract_release(published["out"] / f"{model}-1.tar.gz", registry)
    public_key = published["keys"]["public"]

    result = CliRunner().invoke(cli, ["verify-release", str(registry),
                                      "--public-key", str(public_key)])
    assert result.exit_code == 0, result.output
    assert result.output.count("signature OK") == 4 * len(MODEL_NAMES)   # 4 Triton models each

    server = start(registry, public_key=public_key)
    try:
        module, triton = client(server, "grpc")
        rng = np.random.default_rng(3)
        with triton:
            for model in MODEL_NAMES:
                spec = SPECS[model]
                eager = load_runner("torch", spec, published["out"] / model)
                x = rng.standard_normal((2, 9, spec.input_size)).astype(np.float32)
                want = eager.run({spec.input_name: x})[spec.output_name]
                for runtime in RUNTIMES:
                    in_name, out_name = names(model, runtime)
                    got = infer(module, triton, f"{model}_{runtime}", in_name, x,
                                out_name).as_numpy(out_name)
                    tol = spec.tolerance("cpu")
                    np.testing.assert_allclose(got, want, atol=tol.atol, rtol=tol.rtol,
                                               err_msg=f"{model}_{runtime}")
    finally:
        stop_and_check(server)
