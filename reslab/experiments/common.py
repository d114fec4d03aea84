"""Orchestration shared by experiments: make sure a run exists and is finished, for many runs.

An experiment is a resumable collection of run directories (one per trained model). Running
the same experiment again must not redo finished work, so every run goes through
:func:`~reslab.experiments.runs.ensure_run`, which looks at what its directory already holds
(new: train; stopped before its first checkpoint: train again; unfinished: resume; finished:
reuse; the table is in :mod:`reslab.experiments.runs`).

:func:`ensure_runs` does this for a list of runs through a launcher
(:mod:`reslab.experiments.launch`): one after the other or ``jobs`` at a time on this machine, or
as Slurm jobs or Ray tasks, and keeps the experiment's index of runs
(:mod:`reslab.experiments.index`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from reslab.errors import ConfigError
from reslab.experiments.index import (
    FAILED,
    FINISHED,
    RUNNING,
    STOPPED,
    SUBMITTED,
    ExperimentLock,
    RunIndex,
    announce_start,
)
from reslab.experiments.launch.base import Launcher, LaunchSettings, make_launcher
from reslab.experiments.runs import (  # noqa: F401 - the run-level API, re-exported for experiments
    POLL_S,
    STATUS_EMPTY,
    STATUS_FINISHED,
    STATUS_NEW,
    STATUS_UNFINISHED,
    Message,
    RunOutcome,
    _read_metrics,
    _report_new_epochs,
    check_runs,
    cpu_count,
    describe_outcome,
    ensure_run,
    epoch_line,
    plan_run,
    run_id,
    run_status,
)
from reslab.settings import Settings, key_value_arguments, to_arguments
from reslab.store.jsonfiles import write_json
from reslab.store.lock import RunDirLockedError, check_unlocked, lock_holder
from reslab.train import TrainConfig


@dataclass
class ExperimentResult:
    """What an experiment did (``outcomes``, one per run) and measured (``summary``, its JSON file).

    ``summary`` is None when the experiment was stopped before it finished; ``complete`` is then
    False. ``files`` lists what it wrote.
    """

    experiment_dir: Path
    outcomes: list[RunOutcome]
    summary: dict[str, Any] | None
    files: list[Path] = field(default_factory=list)
    complete: bool = True

    @property
    def trained(self) -> int:
        """How many runs this call trained (or resumed); 0 when everything was reused."""
        return sum(1 for o in self.outcomes if o.trained)


def ensure_runs(configs: Sequence[TrainConfig], *, jobs: int = 1, launch: LaunchSettings | None = None,
                experiment_dir: str | Path | None = None, on_start: Callable[[], Any] | None = None,
                command: str | None = None, say: Message | None = None, epoch_lines: bool = True) -> list[RunOutcome]:
    """:func:`ensure_run` for every config, through a launcher; outcomes in the order of ``configs``.

    ``launch`` (default: local) says where the runs train (:mod:`reslab.experiments.launch`): the
    local launcher trains ``jobs`` at a time in worker processes started fresh with ``spawn`` (pass
    configs with ``quiet=True`` and a ``threads`` value that shares the cores), or one after the
    other in this process with ``jobs=1``; ``slurm`` and ``ray`` hand every run to that engine.

    Before anything trains: settings that clash with a run already on disk are found, the
    launcher starts and checks what it needs (its extra installed, the cluster reachable, the
    experiment directory seen by its workers), and only then is anything written:
    ``on_start()`` (the experiment's own files), the lock on ``experiment_dir`` (one driver at a
    time) and its index ``runs.json`` (:mod:`reslab.experiments.index`). ``experiment_dir``
    defaults to the folder holding the run directories.

    Runs are handed out in the given order, so put the longest first. With ``epoch_lines``, a line
    per finished epoch of a run training elsewhere goes to ``say`` (read from its metrics file).
    If a run is stopped (Ctrl-C, a signal), no further run is started; the runs in flight save
    their checkpoints and the outcomes say ``finished=False``. A run's error is raised once the
    runs in flight have finished (their work is kept).
    """
    say = say or (lambda message: None)
    configs = list(configs)
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    launch = launch if launch is not None else LaunchSettings()
    if experiment_dir is None:
        parents = {str(Path(c.out).resolve().parent) for c in configs if c.out}
        experiment_dir = os.path.commonpath(sorted(parents)) if parents else "."
    experiment_dir = Path(experiment_dir)
    # Settings that clash with runs on disk fail here, before anything trains or is written.
    plans = [plan_run(config) for config in configs]
    # Every run finished: nothing to hand out, so no engine (a Ray cluster, Slurm) is started.
    nothing_to_train = all(plan == "reuse" for plan in plans)
    launcher = make_launcher(LaunchSettings() if nothing_to_train else launch, experiment_dir,
                             jobs=1 if nothing_to_train else jobs)
    with launcher, ExperimentLock(experiment_dir):
        index = RunIndex.load(experiment_dir)
        announce_start()
        if on_start is not None:
            on_start()
        index.set_launcher(launch.to_dict(), command)
        for config in configs:
            index.entry(config)
        index.save()
        return _dispatch(launcher, index, configs, plans, say, epoch_lines)


def _dispatch(launcher: Launcher, index: RunIndex, configs: list[TrainConfig], plans: list[str], say: Message,
              epoch_lines: bool) -> list[RunOutcome]:
    outcomes: list[RunOutcome | None] = [None] * len(configs)
    done_count = 0

    def record(position: int, outcome: RunOutcome, where: str = "") -> None:
        nonlocal done_count
        outcomes[position] = outcome
        index.mark(configs[position], FINISHED if outcome.finished else STOPPED, seconds=round(outcome.seconds, 1),
                   **({"where": where} if where else {}))
        say(describe_outcome(outcome, done_count, len(configs)))
        done_count += 1

    for position, plan in enumerate(plans):
        if plan == "reuse":  # finished: nothing to hand out
            record(position, ensure_run(configs[position]))
    todo = [position for position, plan in enumerate(plans) if plan != "reuse"]
    if getattr(launcher, "in_process", False) or (launcher.name == "local" and len(todo) <= 1):
        for position in todo:
            index.mark(configs[position], RUNNING, where="this process")
            try:
                outcome = ensure_run(configs[position], say=say)
            except BaseException as error:
                index.mark(configs[position], FAILED, error=_one_line(error))
                raise
            record(position, outcome)
            if not outcome.finished:
                break
        return [o for o in outcomes if o is not None]

    pending = list(todo)
    running: dict[Any, int] = {}
    epochs_seen = {position: len(_read_metrics(configs[position])) for position in todo}
    failure: BaseException | None = None
    stopping = False
    waiting_said: set[int] = set()
    requeued: dict[int, int] = {}
    last_look = 0.0
    try:
        while pending or running:
            while pending and not stopping and failure is None and \
                    (launcher.parallel is None or len(running) < launcher.parallel):
                position = _next_unlocked(pending, configs, waiting_said, say)
                if position is None:
                    break
                handle = launcher.submit(launcher.worker_config(configs[position]))
                running[handle] = position
                index.mark(configs[position], SUBMITTED, where=handle.where())
            if not running and (stopping or failure is not None):
                break
            time.sleep(DONE_POLL_S if running else POLL_S)
            if epoch_lines and time.monotonic() - last_look >= POLL_S:
                last_look = time.monotonic()
                # Runs elsewhere train quietly (their lines would interleave): report their epochs
                # from the metrics files they write instead.
                for position in sorted(running.values()):
                    epochs_seen[position] = _report_new_epochs(configs[position], epochs_seen[position], say)
            for handle in [h for h in running if h.done()]:
                position = running.pop(handle)
                if epoch_lines:
                    epochs_seen[position] = _report_new_epochs(configs[position], epochs_seen[position], say)
                try:
                    outcome = handle.outcome()
                except Exception as error:  # noqa: BLE001 - recorded, then raised once the others are done
                    index.mark(configs[position], FAILED, error=_one_line(error), where=handle.where())
                    if running:
                        say(f"{Path(configs[position].out).name} failed: {_one_line(error)}; waiting for the runs in "
                            "flight to finish (Ctrl-C stops them with a checkpoint)")
                    failure = failure or error
                    continue
                if not outcome.finished and launcher.name != "local" and \
                        requeued.get(position, 0) < launcher.settings.max_requeues:
                    # Stopped by its engine (a preemption's SIGTERM, a scancel), not by this
                    # driver: hand it out again; it resumes from the checkpoint it saved.
                    requeued[position] = requeued.get(position, 0) + 1
                    say(f"{Path(configs[position].out).name} stopped ({outcome.stopped_by}) on {handle.where()}; "
                        f"handing it out again ({requeued[position]}/{launcher.settings.max_requeues}), it resumes "
                        "from its checkpoint")
                    index.mark(configs[position], STOPPED, where=handle.where())
                    pending.insert(0, position)
                    continue
                record(position, outcome, handle.where())
                if not outcome.finished:
                    stopping = True
    except BaseException:
        # Ctrl-C reaches local workers too; runs elsewhere are cancelled (their engine sends
        # SIGTERM, on which the trainer saves a checkpoint).
        for handle in running:
            handle.cancel()
        raise
    if failure is not None:
        raise failure
    return [o for o in outcomes if o is not None]


def _next_unlocked(pending: list[int], configs: list[TrainConfig], waiting_said: set[int],
                   say: Message) -> int | None:
    """Take the first pending run no live process is training (one an earlier driver left running is
    waited for: when it lets go, this driver reuses or resumes it)."""
    for slot, position in enumerate(pending):
        run_dir = Path(configs[position].out)
        try:
            check_unlocked(run_dir)
        except RunDirLockedError:
            if position not in waiting_said:
                waiting_said.add(position)
                say(f"{run_dir.name} is being trained by process {lock_holder(run_dir) or '?'} (started before this "
                    "command); waiting for it")
            continue
        return pending.pop(slot)
    return None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


#: Seconds between looks at whether runs handed to a launcher are done.
DONE_POLL_S = 0.2


def stderr_printer(prefix: str, enabled: bool = True) -> Message:
    """A ``say`` function printing ``prefix: message`` lines on stderr (nothing when disabled)."""
    def say(message: str) -> None:
        if enabled:
            print(f"{prefix}: {message}", file=sys.stderr, flush=True)
    return say


def experiment_command(words: Sequence[str], settings: Settings, *, always: Iterable[str] = ()) -> str:
    """The shell command that (re)makes an experiment: ``words`` (``reslab experiment NAME``), then
    every setting that differs from its class default (and those in ``always``), and the training
    ``overrides`` as ``--set KEY=VALUE``. Used by every experiment, so each one's ``command`` reads
    the same way and runs back into the same settings."""
    arguments = to_arguments(settings, base=type(settings)(), always=always)
    slurm_options = getattr(settings, "slurm_option", None)
    if slurm_options:
        arguments += key_value_arguments(slurm_options, "--slurm-option")
    overrides = getattr(settings, "overrides", None)
    if overrides:
        # Before --out, which to_arguments writes last of the fields that come after it.
        position = arguments.index("--out") if "--out" in arguments else len(arguments)
        arguments[position:position] = key_value_arguments(overrides)
    return shlex.join([*words, *arguments])


SETTINGS_FILE = "settings.json"


def write_settings_file(experiment_dir: Path, settings: Settings, command: str) -> Path:
    """``EXP_DIR/settings.json``: the experiment's settings (every field) and the command that remakes it.

    Written when the experiment starts, so an interrupted one says what it was asked to do.
    """
    return write_json(Path(experiment_dir) / SETTINGS_FILE,
                      {"experiment": type(settings).__name__, "command": command, "settings": settings.to_dict()})


def unique_in_order(values: Iterable[Any]) -> list[Any]:
    seen: set = set()
    return [v for v in values if not (v in seen or seen.add(v))]


__all__ = [
    "RunOutcome", "run_status", "plan_run", "check_runs", "ensure_run", "ensure_runs", "describe_outcome", "cpu_count",
    "run_id",
    "stderr_printer",
    "STATUS_NEW", "STATUS_EMPTY", "STATUS_UNFINISHED", "STATUS_FINISHED",
]
