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


def _make(*args, **kwargs):
    """make in the repo root; the venv stamps taken as up to date (-o: never rebuilt here)."""
    import subprocess
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "-o",
                           ".venv-serve/.installed", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_make_serve_with_nothing_published_publishes_first(tmp_path):
    """Straight after `make all` there is no repository yet: `make serve` runs `make publish`
    (which makes the key pair if there is none), then serves. make's plan, dry run."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    plan = _make("-n", "serve", f"OUT={out}", f"KEYS={keys}").stdout
    publish = plan.index(f"-m pipeline publish --out {out} --signing-key {keys}/signing.key")
    assert plan.index(f"-m pipeline keygen {keys}") < publish
    assert publish < plan.index(f"-m pipeline serve --registry {out}/model_repository")
    assert "nothing published in" in plan


def test_make_serve_without_the_public_key_says_what_to_give(tmp_path):
    (tmp_path / "out" / "model_repository").mkdir(parents=True)
    done = _make("serve", f"OUT={tmp_path / 'out'}", f"KEYS={tmp_path / 'none'}")
    assert done.returncode == 2
    assert f"make serve: no {tmp_path}/none/signing.pub to check" in done.stdout + done.stderr
    assert "KEYS=DIR" in done.stdout + done.stderr


def test_make_publish_deploys_what_deploy_names(tmp_path):
    """DEPLOY=best (bench's choice) or a pair goes to publish as --deploy; without it, none."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    for deploy, flag in (("best", " --deploy best"), ("onnx:int8", " --deploy onnx:int8"),
                         ("", "")):
        plan = _make("-n", "-o", "verify", "publish", f"OUT={out}", f"KEYS={keys}",
                     f"DEPLOY={deploy}").stdout
        assert f"-m pipeline publish --out {out} --signing-key {keys}/signing.key{flag}\n" in plan
