"""Atomic file writes, used for every file ``stnkit`` writes: a temporary file in the target's
folder, then ``os.replace``. A reader (or a crash, or Ctrl-C) sees the old complete file or the new
complete one, never a part of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """Opens a temporary file beside ``path`` for binary writing; renames it to ``path`` when the
    block ends without an exception, and deletes it when one is raised (abort by raising).

    The file gets the permissions an ordinary ``open`` would give (``mkstemp`` makes it private).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_open(target) as f:
        ...     _ = f.write(b"hello")
        >>> target.read_bytes()
        b'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)
