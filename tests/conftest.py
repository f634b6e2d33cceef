"""Shared fixtures: one short training run per model, reused by every test module.

Under pytest-xdist (`make test` runs `pytest -n auto`), a session fixture runs once per
worker. The expensive builds here (training both models, ~1 min of CPU; exporting them)
run once per test run instead: the first worker to need one builds it into a folder the
workers share, under a file lock; every worker then copies it into its own tmp folder, as
tests write into it (see `built_once`)."""
import json
import os
import shutil
from pathlib import Path

import pytest

# Two xdist workers share the machine's cores (`make test`: one worker per core). Left to
# their defaults, torch, ONNX Runtime and OpenVINO each start a thread per core in each
# worker, and the spinning pools oversubscribe the cores: the suite took 266 s against 214 s
# with one thread each (user CPU 6m35s against 4m58s, 2 cores). So under xdist, torch (here
# and in the subprocesses tests start) runs one thread, and a runner asked for no thread
# count gets one (`one_thread_per_worker`); a test that passes threads gets what it asks.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pipeline.specs import MODEL_NAMES  # noqa: E402


# `make test` hands whole files to two xdist workers (--dist loadfile) in collection order,
# so a long file collected last keeps one worker busy while the other has nothing left:
# `tests/test_readme.py` (~40 s) sat at the end. These, the longest files (30-45 s each by
# `pytest --durations=0`), are handed out first; the rest keep their order.
LONGEST_FIRST = ("tests/serving/test_faults.py", "tests/test_readme.py",
                 "tests/scoring/test_ray.py", "tests/serving/test_serve.py")


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent.parent
    missing = [f for f in LONGEST_FIRST if not (root / f).exists()]
    if missing:          # renamed or removed: say so, rather than silently order nothing
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names missing files: {missing}")
    rank = {f: i for i, f in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker():
    """Under xdist: torch on one thread; ONNX Runtime sessions and OpenVINO models built
    with threads=None get one (see the comment on OMP_NUM_THREADS above)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import torch

    import pipeline.runtimes.openvino as openvino_runtime
    import pipeline.runtimes.ort as ort_runtime
    torch.set_num_threads(1)
    session, load = ort_runtime.ort_session, openvino_runtime.load_openvino
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ort_runtime, "ort_session", lambda path, device, threads=None,
                      shapes_vary=False: session(path, device, threads or 1, shapes_vary))
        patch.setattr(openvino_runtime, "load_openvino", lambda spec, path, threads=None,
                      hint="f32": load(spec, path, threads or 1, hint))
        yield


def built_once(tmp_path_factory, name: str, build) -> tuple[Path, dict]:
    """`build(folder) -> dict` (JSON-able) run once per test run; returns this worker's own
    copy of the folder it filled, and its result. Without xdist: built in place, as before.
    The shared folder sits beside the workers' base temps (<run's basetemp>/shared-NAME), so
    a new run never reuses an old build."""
    import fcntl

    mine = tmp_path_factory.mktemp(name)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return mine, build(mine)
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # released when the file closes
        done = shared / "result.json"
        if not done.exists():                   # first here: build; the others wait
            (shared / "out").mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(build(shared / "out")))
    shutil.copytree(shared / "out", mine, dirs_exist_ok=True)   # mtimes kept (copy2)
    return mine, json.loads(done.read_text())


def train_both(out: Path) -> dict:
    from pipeline.train import TrainConfig, main

    return {name: main(TrainConfig(name, out, progress=False), log=lambda s: None)
            for name in MODEL_NAMES}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """An artifact root with both models trained by their default recipes (a few seconds
    each): {"out": Path, name: metrics}. Shorter runs leave the classifier's recurrence
    worse conditioned than what `make all` ships, which the export checks then measure."""
    out, metrics = built_once(tmp_path_factory, "exported", train_both)
    return {"out": out, **metrics}


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """`trained`, plus both models exported (model.pt, model.onnx, manifest.json)."""
    from pipeline.export import ExportConfig, main

    def export_both(out: Path) -> dict:
        if out != trained["out"]:               # the shared build starts from the trained one
            shutil.copytree(trained["out"], out, dirs_exist_ok=True)
        return {name: main(ExportConfig(name, out), log=lambda s: None) for name in MODEL_NAMES}

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        manifests = export_both(trained["out"])
    else:   # the shared export, copied over this worker's trained root (what in place gives)
        copy, manifests = built_once(tmp_path_factory, "exports", export_both)
        shutil.copytree(copy, trained["out"], dirs_exist_ok=True)
        shutil.rmtree(copy)
    for name in MODEL_NAMES:
        trained[name]["manifest"] = manifests[name]
    return trained
