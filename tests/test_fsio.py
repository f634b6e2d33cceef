import errno

import pytest

from pipeline.fsio import TMP_PREFIX, atomic_path, atomic_write_bytes, ensure_dir


def test_atomic_write_replaces_whole_file(tmp_path):
    dest = tmp_path / "a.bin"
    atomic_write_bytes(dest, b"old")
    atomic_write_bytes(dest, b"new")
    assert dest.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "a.bin"
    atomic_write_bytes(dest, b"old")
    with pytest.raises(OSError) as info:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC
    assert dest.read_bytes() == b"old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_ensure_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_dir(tmp_path / "f")
    with pytest.raises(OSError):
        ensure_dir(tmp_path / "f" / "sub")
