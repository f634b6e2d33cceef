"""The Makefile's stage targets depend on source files by name: a name that no longer
exists makes `make all` stop with "No rule to make target" (it happened when models.py
moved into pipeline/families/)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_the_makefile_names_exists():
    text = (ROOT / "Makefile").read_text()
    named = set(re.findall(r"(?<![\w/*$(])(pipeline/[\w/]+\.py)\b", text))
    assert named, "the Makefile names no sources: the pattern above is out of date"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert missing == [], f"Makefile names missing files: {missing}"
