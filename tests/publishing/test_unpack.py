"""A release tarball unpacks to what was verified (issue 25, rows 4 and 5), judged against
both Python's tarfile and GNU tar's view of the same file: two members naming one file are
refused (tar xzf keeps the last, tarfile's getmembers() the first), and a member larger
than its manifest says is refused at its header, in bounded memory, leaving nothing."""
import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.publishing.publish import PublishConfig, main
from pipeline.publishing.release import extract_release
from tests.test_cli import one_line_error

GNU_TAR = shutil.which("tar")
needs_tar = pytest.mark.skipif(GNU_TAR is None, reason="GNU tar not installed")


@pytest.fixture(scope="module")
def release(verified, keys, tmp_path_factory):
    """classifier and forecaster published as version 1: {"tarball", "forecaster", "public"}."""
    out = tmp_path_factory.mktemp("released")
    for model in ("classifier", "forecaster"):
        shutil.copytree(verified / model, out / model, ignore=shutil.ignore_patterns(".lock"))
        main(PublishConfig(model, out, signing_key=keys["a"]["private"]), log=lambda s: None)
    return {"tarball": out / "classifier-1.tar.gz", "public": keys["a"]["public"],
            "forecaster_onnx": (out / "model_repository/forecaster_onnx/1/model.onnx").read_bytes()}


def members(tarball: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(tarball) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]


def repack(path: Path, items) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in items:
            info = tarfile.TarInfo(info) if isinstance(info, str) else info
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def verify_release(path, public):
    return CliRunner().invoke(cli, ["verify-release", str(path), "--public-key", str(public)])


def tar_view(path: Path, dest: Path) -> dict[str, str]:
    """{name: sha256} of what GNU tar unpacks."""
    dest.mkdir()
    subprocess.run([GNU_TAR, "-xzf", str(path), "-C", str(dest)], check=True)
    return {str(p.relative_to(dest)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(dest.rglob("*")) if p.is_file()}


@needs_tar
def test_gnu_tar_and_tarfile_unpack_the_verified_release_alike(release, tmp_path):
    assert verify_release(release["tarball"], release["public"]).exit_code == 0
    ours = tmp_path / "ours"
    extract_release(release["tarball"], ours)
    assert tar_view(release["tarball"], tmp_path / "gnu") == {
        str(p.relative_to(ours)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ours.rglob("*")) if p.is_file()}


@needs_tar
def test_a_repeated_member_is_refused_where_tar_would_unpack_the_last(release, tmp_path):
    """Row 4: a second classifier_onnx/1/model.onnx (forecaster's) after the signed one."""
    evil = repack(tmp_path / "classifier-1.tar.gz", members(release["tarball"]) + [
        ("classifier_onnx/1/model.onnx", release["forecaster_onnx"])])
    listed = subprocess.run([GNU_TAR, "-tzf", str(evil)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert listed.count("classifier_onnx/1/model.onnx") == 2           # GNU tar sees both
    gnu = tar_view(evil, tmp_path / "gnu")                              # and keeps the last
    assert gnu["classifier_onnx/1/model.onnx"] == \
        hashlib.sha256(release["forecaster_onnx"]).hexdigest()
    one_line_error(verify_release(evil, release["public"]),
                   "member 'classifier_onnx/1/model.onnx'", "names the same file")


@pytest.mark.parametrize("alias", ["./classifier_onnx/1/model.onnx",
                                   "classifier_onnx/1/MODEL.onnx",
                                   "classifier_onnx//1/model.onnx",
                                   "classifier_onnx/1/model.onnx/"])
def test_names_equal_after_normalising_are_refused(release, tmp_path, alias):
    evil = repack(tmp_path / "classifier-1.tar.gz", members(release["tarball"]) + [
        (alias, release["forecaster_onnx"])])
    one_line_error(verify_release(evil, release["public"]), repr(alias),
                   "names the same file", "after ./, slashes or case")


def huge_member_tarball(path: Path, before, name: str, size: int = 2 << 30) -> Path:
    """`before` members, then `name` of `size` zero bytes, in a file of a few MB: a gzip
    stream of concatenated members (one per MiB of zeros), which gzip and tar read as one."""
    head = b""
    for info, data in before + [(tarfile.TarInfo(name), None)]:
        info = tarfile.TarInfo(info) if isinstance(info, str) else info
        info.size = size if info.name == name else len(data or b"")
        head += info.tobuf(tarfile.PAX_FORMAT)
        if data:
            head += data + b"\0" * (-len(data) % 512)
    zeros = gzip.compress(bytes(1 << 20), mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(head, mtime=0))
        for _ in range(size >> 20):
            f.write(zeros)
        f.write(gzip.compress(bytes(1024), mtime=0))                 # end of archive
    return path


PEAK = textwrap.dedent("""
    import sys
    from pipeline.cli import cli
    try:
        cli(["verify-release", sys.argv[1], "--public-key", sys.argv[2]])
    except SystemExit as exc:
        code = exc.code
    hwm = next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(code, hwm)
""")


@pytest.mark.parametrize("name,needle", [
    ("classifier_onnx/1/model.onnx", "its manifest says; refused before reading it"),
    ("classifier_onnx/1/extra.bin", "no manifest entry allows that much"),
])
def test_a_member_larger_than_its_manifest_is_refused_at_its_header(release, tmp_path, name,
                                                                    needle):
    """Row 5: 2 GiB of zeros in a ~2 MB file; it was refused only after 11 s at 2.1 GB of
    memory, the member written to /tmp. Now: at its header, nothing read, nothing left."""
    before = [(m, d) for m, d in members(release["tarball"])
              if m.name <= "classifier_onnx/1/manifest.json"
              and not m.name.endswith("model.onnx")]
    evil = huge_member_tarball(tmp_path / "classifier-1.tar.gz", before, name)
    assert evil.stat().st_size < 8 << 20
    one_line_error(verify_release(evil, release["public"]), repr(name), needle)
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run([sys.executable, "-c", PEAK, str(evil), str(release["public"])],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "TMPDIR": str(temp)})
    code, peak_kib = done.stdout.split()
    assert code == "1" and needle in done.stderr, done.stderr
    assert int(peak_kib) < 400 * 1024, peak_kib                       # far from 2 GiB
    assert list(temp.iterdir()) == []                                 # nothing left behind
