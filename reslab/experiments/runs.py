"""One run of an experiment: is it new, unfinished or finished, and make sure it is finished.

An experiment is a resumable collection of run directories (one per trained model). Running
the same experiment again must not redo finished work, so every run goes through
:func:`ensure_run`, which looks at what its directory already holds:

=============  =====================================================  ===========
status         the directory holds                                    action
=============  =====================================================  ===========
``new``        nothing (or no trainer files)                          train
``empty``      ``config.json`` but no ``last.state.pt`` (the run       train again
               stopped in its first epoch, before any checkpoint)     from scratch
``unfinished`` a resumable checkpoint of an interrupted run           resume
``finished``   a finished run of the same length                      reuse
=============  =====================================================  ===========

A finished run asked for more epochs is resumed (the trainer extends it). A run whose saved
settings differ from the requested ones in anything that is not resumable (learning rate,
batch size, model, data, …) is an error: reusing it would silently mix two experiments.

Runs are identified by their settings (:func:`run_id`); launchers (:mod:`reslab.experiments.launch`)
hand :func:`ensure_run` to worker processes, Slurm jobs or Ray tasks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reslab.data import SUBSET_OPTIONS, TextDataset, load_dataset, select_classes
from reslab.errors import ConfigError
from reslab.store import rundir
from reslab.train import RESUMABLE_KEYS, TrainConfig, train
from reslab.train import checkpoint as ckpt
from reslab.train.config import config_differences
from reslab.train.trainer import check_training, task_of

STATUS_NEW = "new"
STATUS_EMPTY = "empty"
STATUS_UNFINISHED = "unfinished"
STATUS_FINISHED = "finished"

Message = Callable[[str], None]


@dataclass
class RunOutcome:
    """What :func:`ensure_run` did with one run.

    action: ``"trained"`` (from scratch), ``"restarted"`` (a run that had saved no checkpoint,
    trained again), ``"resumed"`` (continued from its checkpoint), ``"reused"`` (already
    finished: nothing trained). ``finished`` is False when training was stopped (SIGINT/SIGTERM);
    ``stopped_by`` then names the signal. ``seconds`` is the wall time of this call.
    """

    run_dir: str
    model: str
    action: str
    finished: bool
    seconds: float
    stopped_by: str | None = None

    @property
    def trained(self) -> bool:
        """Whether this call ran any training step."""
        return self.action != "reused"


def _load_state(run_dir: Path) -> dict[str, Any] | None:
    path = rundir.state_path(run_dir)
    if not path.is_file():
        return None
    return ckpt.load_state(path)


def run_status(run_dir: str | Path) -> str:
    """``"new"``, ``"empty"``, ``"unfinished"`` or ``"finished"`` (see the module docstring)."""
    return _status_and_state(Path(run_dir))[0]


def _status_and_state(run_dir: Path) -> tuple[str, dict[str, Any] | None]:
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run directory; remove it or choose another --out")
    if not (run_dir / rundir.CONFIG_FILE).is_file() and not rundir.checkpoints_dir(run_dir).exists():
        return STATUS_NEW, None
    state = _load_state(run_dir)
    if state is None:
        return STATUS_EMPTY, None
    return (STATUS_FINISHED if state.get("finished") else STATUS_UNFINISHED), state


def _check_same_settings(run_dir: Path, config: TrainConfig) -> TrainConfig:
    """The run's saved settings; ConfigError if they differ from ``config`` in a non-resumable field."""
    saved = TrainConfig.from_dict(rundir.read_config(run_dir), source=str(run_dir / rundir.CONFIG_FILE))
    changed = {k: v for k, v in config_differences(saved, config).items() if k not in RESUMABLE_KEYS}
    if changed:
        listing = ", ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in sorted(changed.items()))
        raise ConfigError(
            f"{run_dir} holds a run trained with other settings ({listing}); rerunning an experiment reuses its "
            "runs, so give the same settings as before, or a fresh --out directory for the new ones")
    return saved


def _clear_empty_run(run_dir: Path) -> None:
    """Remove what a run that stopped before its first checkpoint wrote (keeps ``analysis/``)."""
    for name in (rundir.CONFIG_FILE, rundir.METRICS_JSONL, rundir.METRICS_CSV):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(rundir.checkpoints_dir(run_dir), ignore_errors=True)


def _requested_iterations(config: TrainConfig, saved_config: dict[str, Any]) -> int | None:
    """Total iterations ``config`` asks for, using the run's recorded steps per epoch."""
    if config.iterations is not None:
        return config.iterations
    steps = saved_config.get("steps_per_epoch")
    return config.epochs * int(steps) if isinstance(steps, int) and config.epochs else None


def plan_run(config: TrainConfig) -> str:
    """What :func:`ensure_run` will do with ``config``'s run, without doing it.

    Returns ``"train"`` (new), ``"restart"`` (stopped before its first checkpoint), ``"resume"``
    (interrupted, or finished but shorter than asked) or ``"reuse"`` (finished, same length).
    Raises ConfigError when the directory holds a run with other settings, or a finished run
    longer than asked.
    """
    if not config.out:
        raise ConfigError("an experiment run needs its run directory in config.out")
    run_dir = Path(config.out)
    status, state = _status_and_state(run_dir)
    if status == STATUS_NEW:
        return "train"
    saved = _check_same_settings(run_dir, config)
    if status == STATUS_EMPTY:
        return "restart"
    if status == STATUS_UNFINISHED:
        return "resume"
    done = int((state or {}).get("iteration") or 0)
    wanted = _requested_iterations(config, rundir.read_config(run_dir))
    if (saved.epochs, saved.iterations) == (config.epochs, config.iterations) or wanted == done:
        return "reuse"
    if wanted is not None and wanted < done:
        raise ConfigError(
            f"{run_dir} holds a finished run of {done} iterations ({saved.epochs or '?'} epochs), longer than the "
            f"{wanted} asked now; ask for the same length, or give a fresh --out directory")
    return "resume"  # the trainer extends a finished run to the longer schedule


def check_runs(configs: Sequence[TrainConfig]) -> None:
    """Check every run that will train before an experiment creates anything.

    Each meets its data and model as the trainer would (:func:`reslab.train.trainer.check_training`:
    data options, model options, modules to freeze, batch size), so a wrong setting of the last
    run fails before the first one trains, and before ``EXP_DIR`` or its ``settings.json`` is
    written. Finished runs are left to :func:`plan_run` (reuse, or a clash with the settings
    asked). Runs on the same data share one load of it.
    """
    loaded: dict[tuple, Any] = {}
    for config in configs:
        if config.out and run_status(config.out) == STATUS_FINISHED:
            continue
        subset = {k: v for k, v in config.data_options.items() if k in SUBSET_OPTIONS}
        rest = {k: v for k, v in config.data_options.items() if k not in SUBSET_OPTIONS}
        task = task_of(config)
        key = (task.name, config.data, config.data_dir, repr(sorted(rest.items())))
        if key not in loaded:  # the task's own loader: images, text or segmentation data
            loaded[key] = task.load_data(dataclasses.replace(config, data_options=rest), download=config.download,
                                          progress=False)
        dataset = loaded[key]
        if subset:
            if isinstance(dataset, TextDataset):  # refused, in load_dataset's words
                load_dataset(config.data, data_dir=config.data_dir, **config.data_options)
            dataset = select_classes(dataset, **subset)
        check_training(config, dataset)


def ensure_run(config: TrainConfig, *, say: Message | None = None, stop_signals: Sequence[int] = ()) -> RunOutcome:
    """Make sure the run ``config.out`` exists and has trained for ``config``'s length.

    Trains it if new, resumes it if interrupted (exactly, via the trainer's checkpoint), reuses
    it if finished (see :func:`plan_run`). Raises ConfigError when the directory holds a run with
    other settings, or a finished run longer than asked; otherwise whatever
    :func:`reslab.train.train` raises. ``stop_signals``: further signals that stop the run with a
    checkpoint (see :func:`reslab.train.train`).
    """
    say = say or (lambda message: None)
    start = time.perf_counter()
    plan = plan_run(config)
    run_dir = Path(config.out)
    if plan == "reuse":
        return RunOutcome(str(run_dir), config.model, "reused", True, time.perf_counter() - start)
    if plan == "restart":
        say(f"{run_dir.name}: it stopped during its first epoch, before saving a checkpoint; training it again")
        _clear_empty_run(run_dir)
    # A stop request is for the training that was running when it was made, not for this one.
    (run_dir / rundir.STOP_REQUEST).unlink(missing_ok=True)
    result = train(config, resume=run_dir if plan == "resume" else None, stop_signals=stop_signals)
    action = {"train": "trained", "restart": "restarted", "resume": "resumed"}[plan]
    return RunOutcome(str(run_dir), config.model, action, result.finished, time.perf_counter() - start,
                      result.stopped_by)


def cpu_count() -> int:
    """CPU cores this process may use (the affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads(launcher: str, jobs: int, overrides: Mapping[str, Any]) -> int | None:
    """Torch threads per run on the local launcher: the cores shared by the ``jobs`` runs at a time
    (torch's own default, one thread per core in every worker, oversubscribes the cores ``jobs``
    times over). None where the settings choose (``overrides`` has ``threads``) or the launcher
    sets them from the CPUs a run gets (slurm, ray)."""
    if launcher == "local" and "threads" not in overrides:
        return max(1, cpu_count() // jobs)
    return None


#: Seconds between looks at the metrics files of runs training in worker processes.
POLL_S = 5.0


def _read_metrics(config: TrainConfig) -> list[dict[str, Any]]:
    # The run is training in a worker right now: tolerate the line it may be writing.
    return rundir.read_metrics(config.out, partial_ok=True)


def _report_new_epochs(config: TrainConfig, seen: int, say: Message) -> int:
    """Say one line per epoch ``config``'s run finished since ``seen``; returns the new count."""
    records = _read_metrics(config)
    for record in records[seen:]:
        say(epoch_line(Path(config.out).name, record, config.epochs))
    return max(seen, len(records))


def epoch_line(name: str, record: dict[str, Any], total_epochs: int | None) -> str:
    """``resnet56-s0: epoch 2/3, train error 41.20%, test error 38.50% (812 s)``."""
    def percent(key: str) -> str:
        value = record.get(key)
        return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "–"

    total = f"/{total_epochs}" if total_epochs else ""
    elapsed = record.get("elapsed_s")
    when = f" ({elapsed:.0f} s)" if isinstance(elapsed, (int, float)) else ""
    return (f"{name}: epoch {record.get('epoch')}{total}, train error {percent('train_error')}, "
            f"test error {percent('test_error')}{when}")


def describe_outcome(outcome: RunOutcome, index: int, total: int) -> str:
    """One progress line, e.g. ``[2/6] resnet56-s0: trained (35.2 s)``."""
    name = Path(outcome.run_dir).name
    if outcome.action == "reused":
        what = "already finished, reused"
    elif outcome.finished:
        what = f"{outcome.action} ({outcome.seconds:.1f} s)"
    else:
        what = f"stopped by {outcome.stopped_by} after {outcome.seconds:.1f} s; checkpoint saved"
    return f"[{index + 1}/{total}] {name}: {what}"




#: Settings that say where and how a run is computed, not what it computes: they are left out of
#: its id, so a run moved to another folder, device or thread count is the same run, and a run
#: asked for more epochs is the same run extended (the trainer resumes it).
_NOT_IDENTITY = RESUMABLE_KEYS | {"progress"}


def run_id(config: TrainConfig) -> str:
    """A run's identity: 12 hex digits of a SHA-256 of every setting that changes what it computes.

    The seed is one of them, so two seeds are two runs; the run directory, the device, the
    thread count, the length (a longer run extends a shorter one) and the printing are not.
    The same settings give the same id on every machine and in every process.
    """
    values = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


__all__ = [
    "RunOutcome", "run_status", "plan_run", "check_runs", "ensure_run", "run_id", "describe_outcome", "epoch_line",
    "cpu_count", "POLL_S",
    "STATUS_NEW", "STATUS_EMPTY", "STATUS_UNFINISHED", "STATUS_FINISHED",
]
