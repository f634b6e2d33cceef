"""Where an artifact came from: library versions and the source commit."""
from __future__ import annotations

from pathlib import Path

LIBRARIES = ("torch", "onnx", "onnxruntime", "safetensors", "numpy")   # what builds and checks artifacts


def versions() -> dict[str, str]:
    # imported here: importlib.metadata alone cost ~0.02 s CPU at start-up, and
    # read_config (every stage, score included) imports this module (issue 23)
    import platform
    from importlib import metadata
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    # onnxruntime-gpu installs the same module under another distribution name
    if "onnxruntime" not in found:
        try:
            found["onnxruntime"] = metadata.version("onnxruntime-gpu")
        except metadata.PackageNotFoundError:
            pass
    return found


def source_commit() -> str | None:
    """The git commit of this package's checkout (with '-dirty' if changed), or None."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "pipeline"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
