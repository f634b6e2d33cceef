"""Stand-in for `pipeline.verify` (on main, not on this branch yet): an honest verification.json.

It really runs TorchScript and ONNX Runtime against eager PyTorch through `pipeline.runners`
and judges them with `pipeline.compare`, then writes the report in verify's format.
Swap: replace `write_verification(out, model)` by
`pipeline.verify.main(pipeline.verify.VerifyConfig(model, out), log=lambda s: None)`.
"""
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipeline.compare import compare
from pipeline.fsio import atomic_write_json
from pipeline.manifest import file_entry, read_manifest
from pipeline.provenance import versions
from pipeline.runners import open_runners
from pipeline.specs import to_dict


def write_verification(out: Path, model: str) -> dict:
    model_dir = Path(out) / model
    torch_ref, *runners = open_runners(model_dir, ("torch", "torchscript", "onnx"))
    spec = torch_ref.spec
    tol = spec.tolerance("cpu")
    rng = np.random.default_rng(1)
    rows = []
    for batch, seq in [(1, 1), (3, 9), (2, 33)]:
        x = rng.standard_normal((batch, seq, spec.input_size)).astype(np.float32)
        expected = torch_ref.run({spec.input_name: x})[spec.output_name]
        for runner in runners:
            c = compare(runner.run({spec.input_name: x})[spec.output_name], expected, tol,
                        spec.task == "classification")
            rows.append({"runtime": runner.name, "provider": runner.provider, "batch": batch,
                         "seq": seq, "scale": 1.0, **c.as_dict()})
    report = {
        "model": model,
        "passed": all(r["passed"] for r in rows),
        "device": "cpu",
        "tolerance": to_dict(tol),
        "artifacts": {name: file_entry(model_dir / name) for name in read_manifest(model_dir)["files"]},
        "rows": rows,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(model_dir / "verification.json", report)
    return report
