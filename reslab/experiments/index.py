"""An experiment's index of runs, its lock, and what ``reslab sweep status`` shows.

``EXP_DIR/runs.json`` lists every run the experiment asked for: its id (:func:`run_id`, a hash of
the settings that change what it computes, the seed among them), its directory, its settings,
where it was sent and what came back. Only the driver writes it (atomically), after each change,
so it survives a driver that dies; workers write only their own run directories. What a run has
*done* is always read from its directory (checkpoint, metrics), never trusted to the index.

One driver at a time: ``EXP_DIR/.lock`` is held (``flock``) while runs are handed out, so a second
``reslab sweep resume`` (or the same experiment command) on the same directory stops at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from reslab.errors import ConfigError
from reslab.experiments.runs import STATUS_FINISHED, run_id, run_status
from reslab.store import rundir
from reslab.store.jsonfiles import read_json, utc_now, write_json
from reslab.store.lock import RunDirLock, RunDirLockedError, check_unlocked, lock_holder
from reslab.train import TrainConfig

INDEX_FILE = "runs.json"
INDEX_FORMAT = 1

PENDING, SUBMITTED, RUNNING, FINISHED, FAILED, STOPPED = "pending", "submitted", "running", "finished", "failed", \
    "stopped"
#: A search's trial its pruner stopped early: done with, never resumed.
PRUNED = "pruned"


class ExperimentLock(RunDirLock):
    """``with ExperimentLock(EXP_DIR):`` one driver hands out an experiment's runs at a time."""

    what = "experiment directory"
    advice = ("another reslab command is running this experiment; wait for it (reslab sweep status DIR shows its "
              "runs) or stop it, then run reslab sweep resume DIR")


#: Lines a driver prints once it holds its experiment and has read its index (``reslab sweep
#: resume`` names the command it re-runs this way), so that input refused before that point
#: (a launcher that cannot start, a second driver, a corrupt index) is the only line printed.
_START_LINES: ContextVar[tuple[str, ...]] = ContextVar("start_lines", default=())


@contextlib.contextmanager
def said_on_start(line: str):
    """``with said_on_start("…"):`` the driver started inside prints ``line`` when it starts (announce_start)."""
    token = _START_LINES.set((*_START_LINES.get(), line))
    try:
        yield
    finally:
        _START_LINES.reset(token)


def announce_start() -> None:
    """Print the lines :func:`said_on_start` left for this driver (once)."""
    for line in _START_LINES.get():
        print(line, file=sys.stderr, flush=True)
    _START_LINES.set(())


class RunIndex:
    """``EXP_DIR/runs.json``: the runs an experiment asked for and where they went (one writer: the driver)."""

    def __init__(self, experiment_dir: str | Path, data: dict[str, Any] | None = None):
        self.experiment_dir = Path(experiment_dir)
        self.data = data or {"format": INDEX_FORMAT, "runs": []}

    @property
    def path(self) -> Path:
        return self.experiment_dir / INDEX_FILE

    @classmethod
    def load(cls, experiment_dir: str | Path, *, missing_ok: bool = True) -> "RunIndex":
        path = Path(experiment_dir) / INDEX_FILE
        if not path.is_file():
            if missing_ok:
                return cls(experiment_dir)
            raise ConfigError(f"{experiment_dir} has no {INDEX_FILE}: it is not an experiment directory reslab wrote "
                              "(reslab experiment … or reslab sweep run --out DIR makes one)")
        data = read_json(path, error=ConfigError, what="experiment index")
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise ConfigError(f"{path} is not an experiment index (no list of runs); it may have been edited by hand")
        return cls(experiment_dir, data)

    # -- runs ------------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        return self.data["runs"]

    def entry(self, config: TrainConfig) -> dict[str, Any]:
        """The run's entry (added if new), matched by its directory."""
        where = self._relative(config.out)
        for item in self.entries():
            if item.get("dir") == where:
                return item
        item = {"id": run_id(config), "name": Path(config.out).name, "dir": where, "state": PENDING,
                "config": config.to_dict()}
        self.entries().append(item)
        return item

    def mark(self, config: TrainConfig, state: str, **details: Any) -> None:
        item = self.entry(config)
        item.update(state=state, updated=utc_now(), **details)
        if state == SUBMITTED:
            item["attempts"] = int(item.get("attempts") or 0) + 1
            item.pop("error", None)
        self.save()

    def set_launcher(self, settings: dict[str, Any], command: str | None = None) -> None:
        self.data["launcher"] = settings
        if command:
            self.data["command"] = command

    def save(self) -> None:
        self.data["updated"] = utc_now()
        self.experiment_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.data)

    def run_dir(self, item: dict[str, Any]) -> Path:
        path = Path(item["dir"])
        return path if path.is_absolute() else self.experiment_dir / path

    def _relative(self, out: str | None) -> str:
        path = Path(out or "")
        try:
            return str(path.resolve().relative_to(self.experiment_dir.resolve()))
        except ValueError:
            return str(path.resolve())


# -- status -----------------------------------------------------------------------------------------
@dataclass
class RunState:
    """One row of ``reslab sweep status``."""

    name: str
    run_id: str
    status: str  # pending / running / finished / failed
    epochs_done: int
    epochs: int | None
    where: str
    error: str | None = None

    def epochs_text(self) -> str:
        return f"{self.epochs_done}/{self.epochs}" if self.epochs else str(self.epochs_done)


def _locked_by(run_dir: Path) -> int | None:
    """The PID of a live process training ``run_dir`` now, else None."""
    try:
        check_unlocked(run_dir)
    except RunDirLockedError:
        return lock_holder(run_dir) or -1
    return None


def driver_alive(experiment_dir: Path) -> bool:
    """Whether a driver holds the experiment's lock now."""
    try:
        check_unlocked(experiment_dir)
    except RunDirLockedError:
        return True
    return False


def run_states(experiment_dir: str | Path) -> list[RunState]:
    """Per run of the experiment: pending, running, finished or failed, its epochs and where it is.

    Finished and running are read from the run directories (a finished checkpoint; a live lock),
    so they are right whatever happened to the driver; ``where`` and a failure's reason come
    from the index.
    """
    if not (Path(experiment_dir) / INDEX_FILE).is_file():
        # An experiment made of several (lr-depth: one study per network): each part's runs.
        parts = sorted(p for p in Path(experiment_dir).iterdir() if (p / INDEX_FILE).is_file()) \
            if Path(experiment_dir).is_dir() else []
        if parts:
            return [replace(state, name=f"{part.name}/{state.name}") for part in parts for state in run_states(part)]
    index = RunIndex.load(experiment_dir, missing_ok=False)
    driving = driver_alive(Path(experiment_dir))
    states = []
    for item in index.entries():
        run_dir = index.run_dir(item)
        epochs = (item.get("config") or {}).get("epochs")
        done = len(rundir.read_metrics(run_dir, partial_ok=True)) if (run_dir / rundir.METRICS_JSONL).is_file() else 0
        holder = _locked_by(run_dir) if run_dir.is_dir() else None
        recorded = item.get("state", PENDING)
        if run_dir.is_dir() and run_status(run_dir) == STATUS_FINISHED:
            status = FINISHED
        elif holder is not None:
            status = RUNNING
        elif recorded in (FAILED, PRUNED):
            status = recorded
        elif recorded in (SUBMITTED, RUNNING) and driving:
            status = RUNNING if recorded == RUNNING else "queued"
        else:
            status = PENDING
        where = item.get("where") or ""
        if holder is not None and not where:
            where = f"pid {holder}" if holder > 0 else "another process"
        states.append(RunState(item.get("name", run_dir.name), item.get("id", ""), status, done,
                               epochs if isinstance(epochs, int) else None, where, item.get("error")))
    return states


def format_states(states: Sequence[RunState]) -> str:
    rows = [("run", "id", "status", "epochs", "where")] + [
        (s.name, s.run_id, s.status + (f" ({s.error})" if s.error and s.status == FAILED else ""), s.epochs_text(),
         s.where) for s in states]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r[:4], widths)) + "  " + str(r[4]) for r in rows]
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()) or "no runs")
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["INDEX_FILE", "RunIndex", "ExperimentLock", "RunState", "run_states", "format_states", "driver_alive",
           "PENDING", "SUBMITTED", "RUNNING", "FINISHED", "FAILED", "STOPPED", "PRUNED"]
