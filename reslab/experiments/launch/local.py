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
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from reslab.experiments.launch.base import Launcher, RunFailed, outcome_from_worker, run_on_worker
from reslab.experiments.runs import RunOutcome
from reslab.store import rundir
from reslab.train import TrainConfig

_PR_SET_PDEATHSIG = 1


_driver_pid: int | None = None
#: The run this worker is training (None between runs).
_run_dir: str | None = None


def _driver_gone() -> bool:
    return _driver_pid is not None and os.getppid() != _driver_pid


def _die_with_driver() -> None:
    """Worker initializer: when the driver dies, a run in progress gets SIGTERM (it saves its checkpoint
    and returns; Linux asks the kernel for that), and the worker exits instead of waiting for more work.

    Waiting would be forever: the pool's queues are pipes this worker holds both ends of, so they
    never report the driver gone.
    """
    global _driver_pid
    _driver_pid = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    threading.Thread(target=_exit_when_driver_gone, name="reslab-driver-watch", daemon=True).start()


def _exit_when_driver_gone() -> None:
    gone_since = None
    while not (_driver_gone() and _run_dir is None):
        time.sleep(_WATCH_S)
        if _driver_gone():
            gone_since = gone_since or time.monotonic()
            if _run_dir is not None and time.monotonic() - gone_since > _SIGTERM_GRACE_S:
                # Still training without the driver: where the kernel's SIGTERM did not come, the
                # trainer's own stop request ends the run within a few steps, with a checkpoint.
                (Path(_run_dir) / rundir.STOP_REQUEST).touch()
    os._exit(0)


#: Seconds between a worker's looks at whether its driver is still there.
_WATCH_S = 0.5
#: Seconds a run may go on without its driver before it is asked to stop.
_SIGTERM_GRACE_S = 5.0


def _train_in_worker(config: dict, storage_root: str) -> dict:
    global _run_dir
    _run_dir = config.get("out")
    try:
        return run_on_worker(config, storage_root)
    finally:
        _run_dir = None
        if _driver_gone():  # the run has saved (SIGTERM); nobody is left to take its result
            os._exit(0)


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
        future = self._pool.submit(_train_in_worker, config.to_dict(), str(self.storage_root))
        return LocalHandle(future, str(config.out))

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None


__all__ = ["LocalLauncher", "LocalHandle"]
