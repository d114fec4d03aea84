"""One writer per run directory: an OS-level lock on ``RUN_DIR/.lock``.

Two ``reslab train … --out SAME`` started a second apart would otherwise both train into the
directory and interleave their checkpoints and metrics. The writer holds ``fcntl.flock`` on the
lock file for as long as it runs; the kernel releases it when the process exits in any way —
including ``kill -9`` — so a lock file left behind by a dead process never blocks anyone (the
PID written in it is only there to name the holder in the error). Readers (``report``,
``eval``, analyses) take no lock.

On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

from reslab.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunDirLockedError(ConfigError):
    """Another process is writing the run directory."""


def lock_holder(run_dir: str | Path) -> int | None:
    """The PID recorded in ``run_dir``'s lock file (``None`` if there is none); it may be stale."""
    try:
        return int((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _locked_error(run_dir: Path, what: str = "run directory",
                  advice: str = "wait for it to finish or stop it, or choose another --out DIR") -> RunDirLockedError:
    holder = lock_holder(run_dir)
    who = f"process {holder}" if holder is not None else "another process"
    return RunDirLockedError(f"{what} {str(run_dir)!r} is being written by {who} (it holds {run_dir / LOCK_FILE}); "
                             f"{advice}")


def check_unlocked(run_dir: str | Path) -> None:
    """Raise :class:`RunDirLockedError` if another live process holds ``run_dir``; create nothing.

    A writer calls this before it loads data and builds its model, so a busy directory is refused
    at once, and takes the lock itself (which creates the directory) only once its settings have
    all been checked. A directory without a lock file is free.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    if fcntl is None or not path.is_file() or str(run_dir.resolve()) in RunDirLock._held:
        return
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked_error(run_dir) from None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RunDirLock:
    """``with RunDirLock(run_dir): …`` — hold the run directory for writing, or fail at once.

    Raises :class:`RunDirLockedError` naming the directory and the holder's PID when another
    live process holds it. Re-entrant within one process (a nested acquire is a no-op).
    """

    _held: dict[str, int] = {}  # resolved path -> nesting depth, for this process
    what = "run directory"
    advice = "wait for it to finish or stop it, or choose another --out DIR"

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._handle = None
        self._key = ""

    def acquire(self) -> "RunDirLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._key = str(self.run_dir.resolve())
        if self._key in RunDirLock._held:
            RunDirLock._held[self._key] += 1
            return self
        if fcntl is None:  # pragma: no cover - Windows
            RunDirLock._held[self._key] = 1
            return self
        path = self.run_dir / LOCK_FILE
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise _locked_error(self.run_dir, self.what, self.advice) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        RunDirLock._held[self._key] = 1
        return self

    def release(self) -> None:
        depth = RunDirLock._held.get(self._key, 0)
        if depth > 1:
            RunDirLock._held[self._key] = depth - 1
            return
        RunDirLock._held.pop(self._key, None)
        if self._handle is not None:
            # The file stays: deleting it would race with a writer that just opened it.
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_FILE", "RunDirLock", "RunDirLockedError", "check_unlocked", "lock_holder"]
