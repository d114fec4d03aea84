"""The local launcher: runs train in worker processes on this machine, ``jobs`` at a time.

Each worker is a fresh ``spawn`` process with its own torch threads (on a small CPU two
single-threaded trainings beat one two-threaded one: the tiny convolutions of CIFAR nets scale
poorly across threads). A worker asks the kernel for SIGTERM when the driver dies, so a driver
killed with SIGKILL leaves no orphan training on: each run saves its checkpoint and
``reslab sweep resume`` continues it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor

from reslab.experiments.launch.base import Launcher, RunFailed, outcome_from_worker, run_on_worker
from reslab.experiments.runs import RunOutcome
from reslab.train import TrainConfig

_PR_SET_PDEATHSIG = 1


def _die_with_driver() -> None:
    """Worker initializer: SIGTERM this process when its parent (the driver) exits (Linux only)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass


class LocalHandle:
    def __init__(self, future: Future, name: str):
        self.future = future
        self.name = name

    def done(self) -> bool:
        return self.future.done()

    def outcome(self) -> RunOutcome:
        error = self.future.exception()
        if error is not None:
            raise RunFailed(f"{self.name} failed: {error}") from error
        return outcome_from_worker(self.future.result())

    def where(self) -> str:
        if self.future.done() and not self.future.cancelled() and self.future.exception() is None:
            result = self.future.result()
            return f"pid {result.get('pid')} on {result.get('host')}"
        return "a worker process on this machine"

    def cancel(self) -> None:
        self.future.cancel()


class LocalLauncher(Launcher):
    """``jobs`` worker processes; with ``jobs=1`` each run trains in this process, as before."""

    name = "local"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> int | None:
        return self.jobs

    @property
    def in_process(self) -> bool:
        return self.jobs <= 1

    def submit(self, config: TrainConfig) -> LocalHandle:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_driver)
        future = self._pool.submit(run_on_worker, config.to_dict(), str(self.storage_root))
        return LocalHandle(future, str(config.out))

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None


__all__ = ["LocalLauncher", "LocalHandle"]
