import errno
import os
import subprocess

import pytest

from pipeline.fsio import (
    TMP_PREFIX,
    atomic_path,
    atomic_paths,
    atomic_write_bytes,
    ensure_dir,
    sweep_stale_temps,
)


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


def test_a_set_is_replaced_only_when_every_file_was_flushed(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.json"
    atomic_write_bytes(a, b"old a")
    atomic_write_bytes(b, b"old b")
    with pytest.raises(OSError) as info:
        with atomic_paths(a, b) as (ta, tb):
            ta.write_bytes(b"new a")
            raise OSError(errno.ENOSPC, "No space left on device")   # writing b fails
    assert (a.read_bytes(), b.read_bytes()) == (b"old a", b"old b")
    assert info.value.filename == str(tmp_path)    # the error says where
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    with atomic_paths(a, b) as (ta, tb):
        ta.write_bytes(b"new a")
        tb.write_bytes(b"new b")
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")


def test_sweep_removes_only_temps_of_dead_writers(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()                                    # reaped: its pid names no process now
    names = {f"{TMP_PREFIX}model.onnx.{dead.pid}.abc": False,
             f"{TMP_PREFIX}model.onnx.{os.getpid()}.abc": True,   # this process: alive
             f"{TMP_PREFIX}model.pt.1.abc": True,                 # init: alive
             f"{TMP_PREFIX}notes": True,                          # not named by atomic_paths
             "model.onnx": True}
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = sweep_stale_temps(tmp_path)
    assert [p.name for p in removed] == [n for n, kept in names.items() if not kept]
    assert {p.name for p in tmp_path.iterdir()} == {n for n, kept in names.items() if kept}
