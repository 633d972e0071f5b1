"""Run directories that never lose data: claim, lock, set aside, commit, restore.

A training run writes into one directory (``--out``). :class:`RunDirectory` enforces these rules
(see ``docs/design.md``, "Run directories"):

* A directory holding anything but an stnkit run is refused; an empty or missing one is fine. A
  run is refused too unless the caller resumes it or overwrites it.
* One process at a time: an OS lock (``flock``) on ``PARENT/.NAME.stnkit-lock``, held by rank 0
  for the whole run. The kernel drops it when the process dies, so a killed run leaves no stuck
  lock.
* Nothing is written before the settings are known to work: :meth:`RunDirectory.session` first
  runs the caller's *probe* (one forward and backward pass on one batch), only then locks and
  prepares the directory.
* Overwrite: the old run is renamed (atomically, same filesystem) to ``PARENT/.NAME.stnkit-previous``
  and deleted only at :meth:`RunDirectory.commit` (the new run's first end-of-epoch checkpoint). A
  failure before that (exception, Ctrl-C, divergence) puts it back untouched; after a hard kill the
  next command that touches the directory (train, quickstart, eval, show, report) puts it back.
* A fresh run that fails before it has a checkpoint leaves the directory as it found it.
* Filesystem failures become one :class:`RunDirectoryError` line naming the path and the cause.

Stale artefacts of an overwritten run (``animation.gif``, ``panel.png``, ...) cannot survive: the
new run starts in an empty directory.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import CHECKPOINT, CONFIG, METRICS, SUMMARY

log = logging.getLogger(__name__)

# Everything an stnkit run directory may hold: the trainer's files, the animation callback's
# (viz/animation.py) and ``stnkit show``'s default panel. Atomic-write leftovers (".NAME.*.tmp") too.
RUN_ENTRIES = frozenset(
    {CONFIG, CHECKPOINT, METRICS, SUMMARY, "animation.gif", "last_epoch.png", "animation_frames", "panel.png"}
)
ASIDE_SUFFIX, LOCK_SUFFIX, TRASH_SUFFIX = ".stnkit-previous", ".stnkit-lock", ".stnkit-trash"
# OS errors that are the filesystem's answer, not a bug: reported as one line.
_FS_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOENT,
    errno.EFBIG,
    errno.EIO,
}


class RunDirectoryError(ValueError):
    """A run directory cannot be used (foreign content, another process, a filesystem failure)."""


class SettingsError(ValueError):
    """Settings that cannot work, found by the probe step before anything is written."""


def _is_leftover(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")  # from stnkit._io.atomic_open


def describe_os_error(err: OSError, path: Path) -> str:
    """One line naming ``path`` and the cause, e.g. ``... 'runs/a': No space left on device (ENOSPC)``."""
    code = errno.errorcode.get(err.errno or 0, "")
    cause = err.strerror or str(err) or type(err).__name__
    where = f" at {err.filename}" if err.filename and str(err.filename) != str(path) else ""
    return f"out: cannot write the run directory {str(path)!r}: {cause}{f' ({code})' if code else ''}{where}"


class RunDirectory:
    """One training run's directory and the rules that keep its data safe.

    Args:
        path: The run directory (``--out``).
        resume: The run continues the run in ``path`` (nothing is set aside or removed).
        overwrite: An existing run in ``path`` may be replaced (set aside until :meth:`commit`).

    Example:
        >>> rd = RunDirectory("runs/demo", overwrite=True)            # doctest: +SKIP
        >>> with rd.session(probe=trainer.probe):                     # doctest: +SKIP
        ...     train_epoch(); save_checkpoint(); rd.commit()
    """

    def __init__(self, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        absolute = Path(os.path.abspath(self.path))
        self.parent, name = absolute.parent, absolute.name
        self.aside = self.parent / f".{name}{ASIDE_SUFFIX}"
        self.lock_path = self.parent / f".{name}{LOCK_SUFFIX}"
        self.trash = self.parent / f".{name}{TRASH_SUFFIX}"
        self.resume, self.overwrite = resume, overwrite
        self._fd: int | None = None
        self._set_aside = False  # the old run is in self.aside
        self._created: set[str] = set()  # what this run may remove if it fails before its first checkpoint
        self._made_dir = False
        self.committed = False
        self.restored = False  # a failure put the directory back as it was

    # -- checks (nothing written) --------------------------------------------------------------------
    def check(self) -> None:
        """Puts back a run an interrupted ``--overwrite`` set aside, then checks what ``path`` holds.

        Raises:
            RunDirectoryError: ``path`` is a file, holds something other than an stnkit run, holds
                a run that is neither resumed nor overwritten, or another process trains into it.
        """
        recover(self.path)
        self._check_contents()

    def _check_contents(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirectoryError(f"out: {str(path)!r} is a file, not a directory; choose a directory for the run")
        entries = sorted(e.name for e in path.iterdir() if not _is_leftover(e.name)) if path.is_dir() else []
        if self.resume or not entries:
            return  # resuming checks the checkpoint itself; an empty or missing directory is fine
        foreign = [e for e in entries if e not in RUN_ENTRIES]
        if foreign or not ({CONFIG, CHECKPOINT} & set(entries)):
            shown = ", ".join(foreign[:3] or entries[:3]) + (", ..." if len(foreign or entries) > 3 else "")
            raise RunDirectoryError(
                f"out: {str(path)!r} holds files that are not an stnkit run ({shown}); refusing to "
                f"write into it: choose an empty or new directory"
            )
        if not self.overwrite:
            raise RunDirectoryError(
                f"out: {str(path)!r} already holds a run ({CHECKPOINT}); resume it (--resume), "
                f"overwrite it (--overwrite) or choose another directory"
            )
        here = Path(os.getcwd())
        if path.is_symlink() or Path(os.path.abspath(path)) in (here, *here.parents):
            why = "is a symbolic link" if path.is_symlink() else "is (or holds) the current directory"
            raise RunDirectoryError(
                f"out: {str(path)!r} {why}, which --overwrite cannot set aside safely; give the "
                f"run directory's real path from outside it"
            )

    # -- the session -----------------------------------------------------------------------------------
    @contextmanager
    def session(
        self,
        probe: Callable[[], None] | None = None,
        *,
        active: bool = True,
        agree: Callable[[bool], bool] | None = None,
    ) -> Iterator[RunDirectory]:
        """Probe, lock and prepare the directory; on a failure before :meth:`commit`, put it back.

        Args:
            probe: Called first, before anything is written (one training step on a copy).
            active: ``False`` on DDP ranks other than 0: they only take part in ``agree``.
            agree: ``agree(ok) -> all ranks ok`` (an all-reduce), so every rank stops when rank 0
                cannot open the directory.

        Raises:
            RunDirectoryError: see :meth:`check`, plus filesystem failures while the body runs.
        """
        ok = False
        try:
            if active:
                if probe is not None:
                    probe()
                self._open()
            ok = True
        finally:
            if agree is not None and not agree(ok) and ok:
                self._close()
                raise RunDirectoryError(f"out: rank 0 could not open the run directory {str(self.path)!r}")
        try:
            yield self
        except OSError as err:
            if active:
                self._rollback()
            mine = err.filename is None or os.path.abspath(str(err.filename)).startswith(str(self.parent))
            if err.errno in _FS_ERRNOS and mine:
                raise RunDirectoryError(describe_os_error(err, self.path)) from err
            raise
        except BaseException:
            if active:
                self._rollback()
            raise
        finally:
            self._close()

    def _open(self) -> None:
        with self._translated():
            self.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        try:
            with self._translated():
                _restore_aside(self.path, self.aside, self.trash)
                self._check_contents()  # again, under the lock: another process may have written since
                existing = sorted(os.listdir(self.path)) if self.path.is_dir() else []
                if self.overwrite and not self.resume and existing:
                    os.rename(self.path, self.aside)  # atomic; the old run stays whole until commit()
                    self._set_aside = True
                self._made_dir = not self.path.is_dir()
                self.path.mkdir(exist_ok=True)
                self._created = set(RUN_ENTRIES) - set(existing)
                self.committed = self.resume
        except BaseException:
            self._rollback()
            self._close()
            raise

    def commit(self) -> None:
        """The new run has its first end-of-epoch checkpoint: delete the run it replaces (if any)."""
        if self.committed:
            return
        self.committed = True
        if self._set_aside:
            with self._translated():
                os.rename(self.aside, self.trash)  # atomic: from here on nothing will put it back
                shutil.rmtree(self.trash, ignore_errors=True)
            self._set_aside = False
            log.info("the run that %s replaces is deleted (the new run has its first checkpoint)", self.path)

    @property
    def keeps_new_run(self) -> bool:
        """Whether the directory keeps this run if it stops now (so a ``--resume`` can continue it)."""
        return self.committed or not self._set_aside

    @property
    def resumable(self) -> bool:
        """After the session: the directory holds this run's checkpoint, so ``--resume`` can continue it."""
        return not self.restored and (self.path / CHECKPOINT).is_file()

    def _rollback(self) -> None:
        if self.committed:
            return
        try:
            if self._set_aside:
                if self.path.exists():
                    os.rename(self.path, self.trash)
                os.rename(self.aside, self.path)
                self._set_aside = False
                self.restored = True
                shutil.rmtree(self.trash, ignore_errors=True)
                log.warning(
                    "the run stopped before its first checkpoint; the previous run is back in %s, untouched", self.path
                )
            elif not (self.path / CHECKPOINT).is_file() and self.path.is_dir():
                for name in os.listdir(self.path):  # nothing resumable: leave the directory as we found it
                    if name in self._created or _is_leftover(name):
                        _remove(self.path / name)
                if self._made_dir and not os.listdir(self.path):
                    self.path.rmdir()
                self.restored = True
        except OSError as err:  # the previous run is still whole in self.aside: say where
            log.error("could not put the previous run back (%s); it is whole in %s", err, self.aside)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except RunDirectoryError:
            raise
        except OSError as err:
            raise RunDirectoryError(describe_os_error(err, self.path)) from err

    # -- the lock --------------------------------------------------------------------------------------
    def _lock(self) -> None:
        self._fd = _try_lock(self.lock_path)
        if self._fd is None:
            raise RunDirectoryError(_busy_message(self.path, self.lock_path))

    def _close(self) -> None:
        if self._fd is not None:
            _unlock(self.lock_path, self._fd)
            self._fd = None


def _try_lock(lock_path: Path) -> int | None:
    """An exclusive ``flock`` on ``lock_path`` (created); ``None`` if another process holds it."""
    import fcntl

    for _ in range(5):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:  # the pid only makes the refusal message friendlier: a full disk must not stop the run here
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                pass
            return fd
        os.close(fd)
    return None


def _unlock(lock_path: Path, fd: int) -> None:
    try:
        os.unlink(lock_path)  # while still holding it (see _try_lock)
    except OSError:
        pass
    os.close(fd)


def _busy_message(path: Path, lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip() or "?"
    except OSError:
        pid = "?"
    return (
        f"out: another stnkit process (pid {pid}) is training into {str(path)!r}; wait for it to end or "
        f"choose another --out"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _restore_aside(path: Path, aside: Path, trash: Path) -> bool:
    """Under the lock: finishes what a killed run left (a set-aside run goes back). True if restored."""
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)  # a commit or restore that was cut short
    if not aside.exists():
        return False
    if path.exists():
        os.rename(path, trash)  # the unfinished new run
    os.rename(aside, path)
    shutil.rmtree(trash, ignore_errors=True)
    log.warning(
        "an --overwrite of %s was interrupted before the new run's first checkpoint: the previous run "
        "is back in place (the unfinished new run was removed)",
        path,
    )
    return True


def recover(path: str | Path) -> bool:
    """Puts back a run that a hard-killed ``--overwrite`` left set aside (``PARENT/.NAME.stnkit-previous``).

    Called by every command that uses a run directory (train, quickstart, eval, show, report).

    Returns:
        Whether a run was put back.

    Raises:
        RunDirectoryError: another process holds the directory (and the set-aside run, if any, is
            named), or the filesystem refuses the rename.
    """
    rd = RunDirectory(path)
    if not rd.aside.exists() and not rd.trash.exists():
        return False
    with rd._translated():
        fd = _try_lock(rd.lock_path)
    if fd is None:
        where = f"; the run it replaces is whole in {str(rd.aside)!r}" if rd.aside.exists() else ""
        raise RunDirectoryError(_busy_message(rd.path, rd.lock_path) + where)
    try:
        with rd._translated():
            return _restore_aside(rd.path, rd.aside, rd.trash)
    finally:
        _unlock(rd.lock_path, fd)
