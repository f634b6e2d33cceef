"""A deliberate export bug for tests: every float32 weight of an ONNX file off by noise."""
import numpy as np


def noisy_onnx_weights(src, dst, rng: np.random.Generator, scale: float = 1e-3) -> None:
    """Write `src` to `dst` with `scale` x N(0, 1) added to every float32 initializer that
    is not a scalar (shape constants and scalars stay exact)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for i, init in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 1:
            noisy = array + scale * rng.standard_normal(array.shape).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(dst))
