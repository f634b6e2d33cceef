"""OpenVINO lists each graph output by its contract name (issue 22): in 2026.4 an output
behind a folded Identity carries the node's internal name first (`h_out` answered
get_any_name() with `Reshape_24`)."""
from pipeline.runtimes import artifact, load_runner, load_stream_runner


def test_openvino_outputs_are_the_contract_names(exported):
    from pipeline.checkpoint import read_config
    for name in ("forecaster", "classifier"):
        folder = exported["out"] / name
        spec = read_config(folder)["recipe"].model
        runner = load_runner("openvino", spec, folder / artifact("openvino"))
        assert runner.outputs == (spec.output_name,)
        stream = load_stream_runner("openvino", spec, folder / artifact("openvino", True))
        assert stream.outputs == tuple(t.name for t in spec.stream_outputs)
