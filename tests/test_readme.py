"""The README's walk-throughs ("Bring your own model"), run as the README prints them, so the
two cannot drift: their code blocks are read from README.md at test time. The tagger block
(`tagger.py`, then import --module, export, verify, predict) is checked against the user's
LSTMTagger; the churn walk-through below.

From a fresh shell (no virtual environment active, PYTHONPATH unset) in a copy of the repo
root (the walk-through's working folder: its `exported/` and `.keys/` go there, not into
this checkout's) whose `.venv` and `.venv-serve` are this checkout's: `my_models.py` is the
Python block, the first shell block runs line by line under `bash -e` (train, keygen,
serve-env, import, export, verify --runtime all, publish), its last line (`serve`) in the
background on free ports, the second block (curl) against it; the answers of both backends
are compared with the user's own module on the same weights; then Ctrl-C stops the server.
The only change to the printed commands: free ports instead of 8000-8003.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("Makefile", "pyproject.toml", "constraints.txt", "constraints-serve.txt", "pipeline")


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's command lines, continuation lines joined, comment lines dropped."""
    return [line for line in block.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def fresh_shell_env() -> dict:
    """The environment of a new terminal: no virtual environment on PATH or active."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(venv_bin).resolve())
    return env


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A copy of the repo root to run in (mtimes kept: make's stamps stay up to date)."""
    root = tmp_path_factory.mktemp("clone")
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, root / name, copy_function=shutil.copy2,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, root / name)
    for venv in (".venv", ".venv-serve"):
        (root / venv).symlink_to(ROOT / venv)
    return root


def test_bring_your_own_model_walk_through_runs_as_printed(root):
    from pipeline.serving.net import free_ports

    text = section("Bring your own model")
    (module,) = [b for b in blocks(text, "python") if b.startswith("# my_models.py")]
    (root / "my_models.py").write_text(module)
    # the walk-through's two blocks: the setup (from activating the venv) and the requests
    (setup,) = [b for b in blocks(text, "sh") if "my_models:make" in b]
    (curl,) = [b for b in blocks(text, "sh") if "curl " in b]
    lines = commands(setup)
    assert lines[0] == ". .venv/bin/activate", "the walk-through must start with the venv"
    serve = lines.pop()
    assert serve.startswith("python -m pipeline serve ")
    env = fresh_shell_env()
    done = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ports = free_ports("127.0.0.1", {"http": 0, "grpc": 0, "metrics": 0, "status": 0})
    serve = serve.split(" #")[0] + "".join(f" --{k}-port {v}" for k, v in ports.items())
    proc = subprocess.Popen(["bash", "-c", f". .venv/bin/activate && exec {serve}"], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        ready = proc.stdout.readline()
        assert ready.startswith("tritonserver ready"), ready + proc.stderr.read()
        script = "\n".join(commands(curl)).replace("localhost:8000", f"localhost:{ports['http']}")
        asked = subprocess.run(["bash", "-e", "-c", script], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
        proc.send_signal(signal.SIGINT)                # Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0 and out.rstrip().endswith("tritonserver stopped"), err[-2000:]
    answers = [json.loads(line) for line in asked.stdout.splitlines() if line.strip()]
    assert [a.get("model_name") for a in answers] == ["churn_onnx", "churn_torchscript"], \
        asked.stdout + asked.stderr

    # the reference: the user's own module on the weights they saved, on the curl's input
    request = json.loads(re.search(r"-d '(.*?)'", script).group(1))["inputs"][0]
    x = np.array(request["data"], np.float32).reshape(request["shape"])
    want = eager(root / "my_models.py", "make", root / "churn.pt", x)
    for answer in answers:
        (output,) = answer["outputs"]
        assert output["name"] == "output" and output["shape"] == list(want.shape), answer
        np.testing.assert_allclose(np.array(output["data"]).reshape(want.shape), want,
                                   rtol=1e-4, atol=1e-5, err_msg=answer["model_name"])


def test_tagger_block_runs_as_printed(root):
    """The chain section's tagger: its file, then its shell block line by line under bash -e
    (weights, import --module, export, verify --runtime all, ids.npy, predict); tags.npy
    equals the user's own LSTMTagger on the ids the block saved."""
    text = section("Bring your own model")
    (module,) = [b for b in blocks(text, "python") if b.startswith("# tagger.py")]
    (root / "tagger.py").write_text(module)
    (block,) = [b for b in blocks(text, "sh") if "--module tagger:LSTMTagger" in b]
    lines = commands(block)
    assert lines[0] == ". .venv/bin/activate", "the block must start with the venv"
    done = subprocess.run(["bash", "-e", "-c", "\n".join(lines)], cwd=root,
                          env=fresh_shell_env(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ids = np.load(root / "ids.npy")                     # (batch, seq) int64 token ids
    want = eager(root / "tagger.py", "LSTMTagger", root / "tagger.pt", ids)
    got = np.load(root / "tags.npy")                    # (batch, seq, 5) log-probabilities
    assert got.shape == want.shape == (*ids.shape, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def eager(path: Path, factory: str, weights: Path, x: np.ndarray) -> np.ndarray:
    """The walk-through's module, loaded from its file, with the saved state dict."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, factory)()
    model.load_state_dict(torch.load(weights, weights_only=True))
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()
