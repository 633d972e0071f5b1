"""Atomic writes: all or nothing, with ordinary file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from stnkit._io import atomic_open, atomic_write


def test_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]  # no temporary left


def test_an_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_open(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
