"""The trainer: ``train(config) -> TrainResult``.

One loop serves a laptop CPU, one GPU and ``torchrun`` with many processes:

* data: the whole split lives on the device as uint8 (:class:`reslab.data.DeviceLoader`);
  batches are cropped/flipped/normalised there with batched ops, sharded across ranks;
* step: forward (bf16 autocast when asked, on CUDA or a CPU with bf16 units) → cross-entropy with label smoothing →
  backward (split into ``accumulate`` micro-batches when asked) → optional gradient clipping →
  SGD with the schedule's lr → EMA update. Loss and error sums stay on the device; the host
  reads them only every few steps (no ``.item()`` per step, which would stall a GPU);
* bookkeeping: per-epoch metrics, atomic checkpoints, exact resume, clean stop on
  SIGINT/SIGTERM, a clear error on a non-finite loss or out-of-memory.

Determinism: the seed fixes the initial weights (``seed_everything`` before the model is
built), the data order and augmentation (the loader's (seed, epoch) generator) and dropout
(the global torch generator, saved in checkpoints). On CPU the same seed gives bit-identical
weights, and resuming from a checkpoint continues the same trajectory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from reslab.errors import ConfigError, ReslabError, TrainingError
from reslab.models import weight_layers
from reslab.store import rundir as schema
from reslab.store.lock import RunDirLock, check_unlocked
from reslab.tasks import Task, choose_task
from reslab.tasks.classify import is_oom as _is_oom
from reslab.tasks.common import bf16_available
from reslab.train import checkpoint as ckpt
from reslab.train import rundir, transfer
from reslab.train.config import RESUMABLE_KEYS, TrainConfig, config_differences
from reslab.train.distributed import DistInfo
from reslab.train.distributed import setup as setup_distributed
from reslab.train.ema import ModelEMA
from reslab.train.optim import build_optimizer, set_lr
from reslab.train.schedules import LRSchedule, build_schedule
from reslab.train.step import TrainStep
from reslab.utils import resolve_device, seed_everything

#: Steps between host reads of the running loss (finiteness check, progress bar).
CHECK_EVERY = 10


@dataclass
class TrainResult:
    """What a call to :func:`train` produced.

    ``model`` is the trained network (eval mode, CPU); ``metrics`` the per-epoch records (as in
    ``metrics.jsonl``); ``finished`` says whether the whole schedule ran; ``stopped_by`` is
    ``"SIGINT"``/``"SIGTERM"``/``"stop_after_epoch"`` when it ended early (a checkpoint was saved).
    """

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    epoch: int
    iteration: int
    total_iterations: int
    metrics: list[dict[str, Any]]
    finished: bool
    elapsed_s: float
    stopped_by: str | None = None
    ema_model: nn.Module | None = None
    notes: list[str] = field(default_factory=list)
    task: str = schema.TASK_CLASSIFY

    def last(self, key: str) -> Any:
        """The latest value of metric ``key`` (``None`` if no epoch recorded one)."""
        for record in reversed(self.metrics):
            if record.get(key) is not None:
                return record[key]
        return None

    @property
    def test_miou(self) -> float | None:
        return self.last("test_miou")

    @property
    def test_pixel_accuracy(self) -> float | None:
        return self.last("test_pixel_accuracy")

    @property
    def test_error(self) -> float | None:
        return self.last("test_error")

    @property
    def test_loss(self) -> float | None:
        return self.last("test_loss")

    @property
    def test_accuracy(self) -> float | None:
        error = self.test_error
        return None if error is None else 1.0 - error

    @property
    def ema_test_error(self) -> float | None:
        return self.last("ema_test_error")

    def summary(self) -> str:
        """One line: model, data, test accuracy, length and time, run directory."""
        from reslab.tasks import get_task  # noqa: PLC0415 - the task is registered: this run trained it

        c = self.config
        keys = {key for record in self.metrics for key in record}
        parts = [f"{c.model} on {c.data}:", *get_task(self.task).summary_parts({k: self.last(k) for k in keys})]
        if self.ema_test_error is not None:
            ema = {k.replace("ema_test", "test", 1): self.last(k) for k in keys if k.startswith("ema_test")}
            parts.append("| EMA " + " ".join(get_task(self.task).summary_parts(ema)))
        stopped = {"stop_after_epoch": "--stop-after"}.get(self.stopped_by, self.stopped_by)
        state = "done" if self.finished else f"stopped ({stopped})"
        parts.append(f"| {self.epoch} epoch{'s' if self.epoch != 1 else ''}, {self.iteration}/{self.total_iterations} iterations, "
                     f"{self.elapsed_s:.1f} s, {state} | run: {self.run_dir}")
        return " ".join(parts)


# -- signals --------------------------------------------------------------------------------------
class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step; a second one aborts."""

    def __init__(self, announce, extra_signals: Sequence[int] = ()) -> None:
        self.signal_name: str | None = None
        self._announce = announce
        self._signals = (signal.SIGINT, signal.SIGTERM, *extra_signals)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt  # the second signal: stop waiting for the step to finish
        self.signal_name = signal.Signals(signum).name
        self._announce(f"{self.signal_name} received: finishing the current step and saving a checkpoint "
                       "(send it again to abort without saving)")

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# -- helpers --------------------------------------------------------------------------------------
def make_criterion(task: Task, config: TrainConfig) -> nn.Module:
    """The training loss the task asks for."""
    return task.criterion(config)


def _oom_error(config: TrainConfig, per_rank: int, device: torch.device, where: str) -> TrainingError:
    smaller = max(1, config.batch_size // 2)
    return TrainingError(
        f"out of memory on {device} {where} (batch size {config.batch_size}, {per_rank} per process per step); "
        f"use a smaller --batch-size (e.g. {smaller}) or keep the batch and split each step with "
        f"--set accumulate={2 * config.accumulate}; the last checkpoint is kept")


def _depth(model: nn.Module) -> int:
    try:
        return len(weight_layers(model))
    except Exception:  # noqa: BLE001 - a model outside the registry: no depth-based rules
        return 0


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.dtype.is_floating_point)


class _Printer:
    """Messages of rank 0: through tqdm (so bars are not broken) unless quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            from tqdm import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

            tqdm.write(f"reslab train: {message}", file=sys.stderr)


def task_of(config: TrainConfig) -> Task:
    """The run's task, with its options checked and the engine settings it does not use refused.

    A setting the task does not use is refused only when it was changed from the engine's default
    (a recipe or the user asked for something that would not happen); at its default it is noted.
    """
    task = choose_task(config.model, config.data, config.task)
    task.options(config.task_options)
    for key, off in task.unused.items():
        value = getattr(config, key)
        if value != off and value != TrainConfig.default(key):
            what = f" ({task.description})" if task.description else ""
            off_text = str(off).lower() if isinstance(off, bool) else off
            raise ConfigError(f"{key}={value!r}: task {task.name!r} does not use it{what}; leave it out or set "
                              f"{key}={off_text}")
    return task


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its data paths made absolute where they exist, so the run's record finds its
    data from any working directory (eval, the analyses and ``--resume`` read it back)."""
    changes: dict[str, Any] = {}
    if config.data_dir and Path(config.data_dir).expanduser().exists():
        changes["data_dir"] = str(Path(config.data_dir).expanduser().resolve())
    kind, separator, folder = config.data.partition(":")
    if separator and folder and Path(folder).expanduser().exists():
        changes["data"] = f"{kind}:{Path(folder).expanduser().resolve()}"
    file = config.data_options.get("file")
    if isinstance(file, str) and Path(file).expanduser().exists():
        changes["data_options"] = {**config.data_options, "file": str(Path(file).expanduser().resolve())}
    return config.replace(**changes) if changes else config


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - lazy: tensorboard is an optional dependency
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'reslab[tensorboard]'") from None
    return SummaryWriter


def check_training(config: TrainConfig, dataset: Any = None) -> None:
    """Check ``config`` as :func:`train` does before it writes anything, without training or writing.

    The device, the data and its options, the model sized for the data and its options, the
    modules to freeze and the batch size against the data. ``dataset``: the data ``config`` names,
    when the caller has loaded it already. The fine-tuning source itself is not read (an
    experiment's pretrained run may not exist yet). Experiments call this for every run before
    they create their directory, so a wrong setting of the last run fails before the first trains.
    """
    resolve_device(config.device)
    task = task_of(config)
    ds = dataset if dataset is not None else task.load_data(config, download=config.download, progress=False)
    with torch.device("meta"):  # names and shapes only: no memory, no time spent on initial weights
        model = task.build_model(config, ds)
    if config.init_from:
        transfer.resolve_freeze(model, list(config.freeze))
    task.check(config, model, ds)


# -- the trainer ----------------------------------------------------------------------------------
def train(config: TrainConfig | None = None, *, resume: str | Path | None = None,
          stop_after_epoch: int | None = None, stop_signals: Sequence[int] = ()) -> TrainResult:
    """Train a model as ``config`` says, writing a run directory; or continue one.

    Args:
        config: the settings (see :class:`TrainConfig`, :func:`resolve_config`). With
            ``resume`` it may be omitted (the run's own settings are used) or change only
            :data:`~reslab.train.config.RESUMABLE_KEYS` (e.g. more ``epochs``).
        resume: a run directory to continue exactly from its ``last.state.pt``.
        stop_after_epoch: save and return once this many epochs (of the whole run) are done,
            leaving the run unfinished (continue it with ``resume``).
        stop_signals: signals that stop the run with a checkpoint, besides SIGINT and SIGTERM
            (a Slurm job's timeout warning, SIGUSR2, under submitit). A file
            ``RUN_DIR/stop-request`` (:data:`schema.STOP_REQUEST`) stops it too, within
            ``CHECK_EVERY`` steps (a search prunes a trial on another machine that way).

    Returns a :class:`TrainResult`. Raises ConfigError (bad settings, a run directory that is
    in use), DatasetError, ModelConfigError, CheckpointError (resume of a missing/corrupt run)
    or TrainingError (non-finite loss, out of memory).
    """
    if config is None and resume is None:
        raise ConfigError("train() needs a TrainConfig, or resume=RUN_DIR to continue a run")
    state: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        saved = rundir.read_config(run_dir)
        from reslab.tasks import task_names  # noqa: PLC0415 - the registry as it stands now, user tasks included

        if schema.config_task(saved) not in task_names():
            raise ConfigError(f"{str(run_dir)!r} is a run of task {schema.config_task(saved)!r}, which reslab does "
                              "not ship (its own code registered it); resume it from that code")
        if "format" not in saved and schema.config_task(saved) == schema.TASK_SEGMENT:
            raise ckpt.CheckpointError(f"{str(run_dir)!r} is a segmentation run written before runs had one engine; "
                                       "it loads for eval, predict and the analyses but cannot be resumed: train "
                                       "a new run")
        base = TrainConfig.from_dict({**saved, "task": schema.config_task(saved)},
                                     source=f"{run_dir / rundir.CONFIG_FILE}")
        if config is None:
            config = base
        else:
            if config.task is None:
                config = config.replace(task=base.task)
            changed = {k: v for k, v in config_differences(base, config).items() if k not in RESUMABLE_KEYS}
            if "task_options" in changed:  # the task says which of its own options a resume may change
                old, new = changed["task_options"]
                keys = {k for k in {*old, *new} if old.get(k) != new.get(k)}
                if keys <= task_of(base).resumable:
                    del changed["task_options"]
            if changed:
                listing = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in sorted(changed.items()))
                raise ConfigError(f"cannot change {listing} when resuming {str(run_dir)!r}: it would not continue the "
                                  f"same run; only {', '.join(sorted(RESUMABLE_KEYS))} may change. Start a fresh run "
                                  "with --out DIR instead")
        config = config.replace(out=str(run_dir))
    else:
        assert config is not None
        run_dir = Path(config.out) if config.out else rundir.default_run_dir(config.model, config.data)
    if config.task is None:  # the run records its task, so a resume never guesses
        config = config.replace(task=task_of(config).name)
    if resume is None:
        config = with_absolute_paths(config)

    dist_info = setup_distributed(config.device)
    holder = RunDirLock(run_dir) if dist_info.is_main else contextlib.nullcontext()
    try:
        if resume is not None:
            # One writer per run directory: a second `reslab train --resume SAME` stops here, at once.
            with holder:
                state = ckpt.load_state(rundir.state_path(run_dir))
                return _Trainer(config, run_dir, dist_info, state, stop_after_epoch, stop_signals).run()
        if dist_info.is_main:
            # A busy or used directory is refused before the data loads, without creating anything.
            check_unlocked(run_dir)
            rundir.check_fresh(run_dir)
        trainer = _Trainer(config, run_dir, dist_info, None, stop_after_epoch, stop_signals)
        # Every setting meets the data and the model here; the directory (and its lock) exists only
        # once they have all passed, so a refused command leaves nothing behind.
        trainer.build()
        with holder:
            if dist_info.is_main:
                rundir.check_fresh(run_dir)  # another process may have trained into it meanwhile
            return trainer.run()
    finally:
        dist_info.close()


def finetune(source: str | Path, *, data: str, recipe: str | Path | None = None, model: str | None = None,
             **overrides: Any) -> TrainResult:
    """Fine-tune ``source`` on ``data`` (the Python twin of ``reslab finetune``): a run whose
    initialisation hook copies the source's weights (see :mod:`reslab.train.transfer`).

    ``finetune("runs/r20", data="cifar10", data_options={"classes": [...], "per_class": 100},
    freeze=["stem"], head_lr=0.1, lr=0.02, epochs=30)``
    """
    return train(transfer.finetune_config(source, data=data, recipe=recipe, model=model, overrides=overrides))


@dataclass
class _EpochProgress:
    """How far one epoch got: its sums (loss·n, wrong, n), the loss window checked for NaN, and why it stopped."""

    steps: int
    batch: int
    sums: torch.Tensor
    window: torch.Tensor
    window_count: int = 0
    train_time: float = 0.0
    stopped_by: str | None = None

    def add(self, batch: int, loss_sum: torch.Tensor, wrong: torch.Tensor, count: int, samples: int) -> None:
        self.batch = batch
        self.sums[0] += loss_sum
        self.sums[1] += wrong
        self.sums[2] += count
        self.sums[3] += samples
        self.window += loss_sum
        self.window_count += count


class _Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path, dist_info: DistInfo, state: dict | None,
                 stop_after_epoch: int | None, stop_signals: Sequence[int] = ()) -> None:
        self.config = config
        self.stop_signals = tuple(stop_signals)
        self.run_dir = run_dir
        self.dist = dist_info
        self.device = dist_info.device
        self.resume_state = state
        self.stop_after_epoch = stop_after_epoch
        self.is_main = dist_info.is_main
        self.say = _Printer(self.is_main and not config.quiet)
        self.notes: list[str] = []
        self.built = False

    # -- set-up -------------------------------------------------------------------------------
    def _load_data(self):
        c = self.config
        load = lambda download: self.task.load_data(c, download=download)  # noqa: E731
        if self.dist.distributed and c.download:
            # One download, then everyone reads the files.
            dataset = load(True) if self.is_main else None
            self.dist.barrier()
            return dataset if dataset is not None else load(False)
        return load(c.download)

    def build(self) -> None:
        """Data, model, loaders, schedule and optimizer: every check of the settings, nothing written."""
        if not self.built:
            self.session_start = time.perf_counter()  # loading the data counts in the session's time
            self._build()
            self.built = True

    def _build(self) -> None:
        c, d = self.config, self.dist
        self.bf16 = False
        if c.bf16:
            self.bf16, why_not = bf16_available(self.device)
            self.notes.append(f"bf16 autocast on {self.device.type} (float32 master weights)" if self.bf16 else why_not)
        if c.sync_bn and d.distributed and self.device.type != "cuda":
            self.notes.append("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); on CPU each rank's "
                              "BatchNorm uses its own shard's statistics, like accumulate=world_size micro-batches")

        if c.tensorboard and self.is_main:
            self.summary_writer = _summary_writer_class()  # a missing package fails before the run directory exists
        if c.threads:
            torch.set_num_threads(c.threads)
        self.task = task_of(c)
        seed_everything(c.seed)
        self.dataset = ds = self._load_data()
        self.model = model = self.task.build_model(c, ds)
        self.task.check(c, model, ds)
        self._prepare_transfer()
        self.depth = _depth(model)
        self.init_state = ckpt.cpu_state_dict(model.state_dict())
        self._build_loaders()
        self.steps_per_epoch = len(self.loader)
        self.total_iterations = c.iterations if c.iterations is not None else c.epochs * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_iterations / self.steps_per_epoch)
        self.schedule: LRSchedule = build_schedule(c, self.steps_per_epoch, self.total_iterations, self.depth)
        self.notes.extend(self.schedule.notes)
        self._build_optimization()

    def _prepare_transfer(self) -> None:
        """Fine-tuning (``init_from``): the source's weights but the head, frozen modules, fixed BN layers."""
        c = self.config
        self.head_name: str | None = None
        self.fixed_bn: list[nn.Module] = []
        self.transfer_record: dict[str, Any] | None = None
        if not c.init_from:
            return
        self.head_name = transfer.classifier_name(self.model)
        frozen = transfer.resolve_freeze(self.model, list(c.freeze))
        if self.resume_state is not None:  # a resumed run's weights come from its own state
            self.transfer_record = rundir.read_config(self.run_dir).get("transfer")
        else:
            source = transfer.read_source(c.init_from)
            loaded = transfer.load_backbone(self.model, source, f"fine-tuning source {c.init_from!r}")
            self.transfer_record = {**source.origin, **loaded, "frozen": frozen, "freeze_bn": c.freeze_bn}
            self.notes.append(f"fine-tuning from {c.init_from}: {loaded['copied_tensors']} tensors copied, new head "
                              f"{loaded['head']!r} for {self.dataset.num_classes} classes"
                              + (f"; frozen: {', '.join(frozen)}" if frozen else "")
                              + ("; all BN layers fixed" if c.freeze_bn else ""))
            self.notes.extend(loaded["notes"])
        transfer.freeze(self.model, frozen)
        self.fixed_bn = transfer.fixed_bn_modules(self.model, frozen, c.freeze_bn)

    def _build_loaders(self) -> None:
        """The task's device-resident train and test loaders, this rank's share of every global batch."""
        c, d = self.config, self.dist
        self.per_rank_batch = c.batch_size // d.world_size
        self.loader, self.test_loader = self.task.loaders(c, self.dataset, batch_size=self.per_rank_batch,
                                                          device=self.device, rank=d.rank, world_size=d.world_size)

    def _build_optimization(self) -> None:
        """The model on its device, the optimizer, EMA, loss, DDP/compile wrappers and the step."""
        c, d, model = self.config, self.dist, self.model
        memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
        model.to(self.device, memory_format=memory_format)
        if c.sync_bn and d.distributed and self.device.type == "cuda":
            model = self.model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.optimizer = build_optimizer(model, c, head=self.head_name)
        self.ema = ModelEMA(model, c.ema_decay) if c.ema else None
        self.criterion = make_criterion(self.task, c)
        net: nn.Module = model
        self.ddp = None
        if d.distributed:

            self.ddp = net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            # Different dropout / drop-path masks on each rank (their data differ too).
            torch.manual_seed(c.seed + 1_000_003 * d.rank)
        if c.compile:
            net = torch.compile(net)
        self.net = net
        self.step = TrainStep(net, model, self.optimizer, self.criterion, accumulate=c.accumulate,
                              grad_clip=c.grad_clip, bf16=self.bf16, ema=self.ema, ddp=self.ddp,
                              flatten=self.task.flatten)

    def _resolved_config(self) -> dict[str, Any]:
        """``config.json``: the settings as given, then each derived fact once (:data:`schema.CONFIG_FORMAT`)."""
        c = self.config
        resolved = {"format": schema.CONFIG_FORMAT, **c.to_dict(), "task": self.task.name, "out": str(self.run_dir)}
        resolved.update({
            **self.task.data_facts(self.dataset),
            "variant": schema.model_variant(c.model, {**c.model_options,
                                                      **getattr(self.model, "model_options", {})}),
            "depth": self.depth,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            **self.task.facts(self.dataset, self.model),
            "device": str(self.device), "world_size": self.dist.world_size,
            "steps_per_epoch": self.steps_per_epoch, "total_iterations": self.total_iterations,
            "total_epochs": self.total_epochs, "warmup_iterations": self.schedule.warmup,
            "augment": self.task.augment(c), "notes": list(self.notes),
            "transfer": self.transfer_record,
            "versions": rundir.versions(),
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        return resolved

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, *, finished: bool, epoch_done: int, batch_in_epoch: int, partial: dict | None,
              snapshot: bool) -> None:
        """Write last (+ ema, + epoch snapshot) weights and then the state (the commit point)."""
        if not self.is_main:
            return
        weights = self.model.state_dict()
        if not _all_finite(weights.values()):
            raise TrainingError("the weights are no longer finite (NaN/Inf); not saving them. The last good "
                                f"checkpoint in {self.run_dir / ckpt.CHECKPOINT_DIR} is kept")
        directory = rundir.checkpoints_dir(self.run_dir)
        meta = {"model": self.config.model, "task": self.task.name, "epoch": epoch_done, "iteration": self.iteration,
                "batch_in_epoch": batch_in_epoch}
        weights = ckpt.cpu_state_dict(weights)
        ckpt.save_weights(directory / schema.LAST_WEIGHTS, weights, meta)
        if self.ema is not None:
            ckpt.save_weights(directory / schema.EMA_WEIGHTS, self.ema.module.state_dict(), meta)
        if snapshot:
            ckpt.save_weights(directory / ckpt.epoch_file(epoch_done), weights, meta)
        state = {
            "format": ckpt.STATE_FORMAT,
            "task": self.task.name,
            "epoch": epoch_done,
            "batch_in_epoch": batch_in_epoch,
            "iteration": self.iteration,
            "total_iterations": self.total_iterations,
            "finished": finished,
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"iteration": self.iteration, "kind": self.schedule.kind, "warmup": self.schedule.warmup},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": ckpt.capture_rng(),
            "metrics": list(self.metrics),
            "partial": partial,
            "elapsed_s": self._elapsed(),
        }
        ckpt.save_state(rundir.state_path(self.run_dir), state)

    def _restore(self, state: dict) -> None:
        ckpt.load_into(self.model, state["model"], f"{rundir.state_path(self.run_dir)}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ckpt.CheckpointError(f"the optimizer state in {rundir.state_path(self.run_dir)} does not match the "
                                       f"model ({exc})") from None
        if self.ema is not None:
            if state.get("ema") is None:
                raise ckpt.CheckpointError("the run was trained without EMA; it cannot be resumed with ema=true")
            self.ema.load_state_dict(state["ema"])
        self.iteration = int(state["iteration"])
        if self.config.warmup_until_error and "warmup" in (state.get("scheduler") or {}):
            # Where an error-triggered warm-up ended is part of the schedule's state.
            self.schedule = dataclasses.replace(self.schedule, warmup=int(state["scheduler"]["warmup"]))
        self.start_epoch = int(state["epoch"])
        self.skip_batches = int(state.get("batch_in_epoch") or 0)
        self.partial = state.get("partial")
        self.metrics = list(state.get("metrics") or [])
        self.elapsed_before = float(state.get("elapsed_s") or 0.0)
        if self.iteration >= self.total_iterations:
            raise ConfigError(f"the run in {str(self.run_dir)!r} already finished {self.iteration} of "
                              f"{self.total_iterations} iterations; to train longer pass more --epochs "
                              f"(it has done {self.start_epoch})")
        ckpt.restore_rng(state["rng"])

    def _unit(self, short: bool = False) -> str:
        """What a training sample is (the task says: images, characters, ...)."""
        return self.task.unit[1] if short else self.task.unit[0]

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.session_start)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        c = self.config
        self.build()
        self.iteration, self.start_epoch, self.skip_batches = 0, 0, 0
        self.partial: dict | None = None
        self.metrics: list[dict[str, Any]] = []
        self.elapsed_before = 0.0
        resolved = self._resolved_config()
        if self.resume_state is not None:
            self._restore(self.resume_state)
            resolved["resumed_at_iteration"] = self.iteration
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "analysis").mkdir(exist_ok=True)
            rundir.write_config(self.run_dir, resolved)
            if self.resume_state is None:
                ckpt.save_weights(rundir.checkpoints_dir(self.run_dir) / schema.INIT_WEIGHTS, self.init_state,
                                  {"model": c.model, "task": self.task.name, "epoch": 0, "iteration": 0})
        for note in self.notes:
            self.say(f"note: {note}")
        self.say(f"{c.model} ({self.depth} layers) on {c.data} ({self.loader.dataset_size} train {self._unit()}), "
                 f"{self.total_iterations} iterations = {self.total_epochs} epoch{'s' if self.total_epochs != 1 else ''} of "
                 f"{self.steps_per_epoch}, "
                 f"batch {c.batch_size}, {self.device}"
                 + (f" x{self.dist.world_size}" if self.dist.distributed else "") + f", run dir {self.run_dir}")

        writer = self._tensorboard() if c.tensorboard and self.is_main else None
        stopped_by = None
        try:
            with _StopRequest(self.say, self.stop_signals) as stop:
                stopped_by = self._loop(stop, writer)
        finally:
            if writer is not None:
                writer.close()
        self.dist.barrier()
        finished = stopped_by is None
        model = self.model.to("cpu").eval()
        ema_model = self.ema.module.to("cpu").eval() if self.ema is not None else None
        return TrainResult(run_dir=self.run_dir, config=c, model=model, epoch=self.epoch_done,
                           iteration=self.iteration, total_iterations=self.total_iterations,
                           metrics=list(self.metrics), finished=finished, elapsed_s=self._elapsed(),
                           stopped_by=stopped_by, ema_model=ema_model, notes=list(self.notes), task=self.task.name)

    def _tensorboard(self):
        return self.summary_writer(log_dir=str(self.run_dir / "tensorboard"))

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch; returns (loss·n, wrong) as device tensors."""
        return self.step(x, y)

    def _evaluate(self, model: nn.Module, prefix: str, flip: bool = False) -> dict[str, Any]:
        """The task's test metrics of ``model`` (keys ``{prefix}_loss``, ``{prefix}_error``, ...), all ranks summed."""
        if self.test_loader is None:
            return {}
        sums = self.task.evaluate(model, self.test_loader, bf16=self.bf16, flip=flip)
        return self.task.test_metrics(self.dist.all_reduce_sum(sums).cpu(), prefix)

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics before evaluating (DDP broadcasts them only in forward)."""
        if self.dist.distributed:

            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    def _loop(self, stop: _StopRequest, writer) -> str | None:
        """Epochs until the end, a stop request (saved where it happened) or ``stop_after_epoch``."""
        self.epoch_done = self.start_epoch
        for epoch in range(self.start_epoch, self.total_epochs):
            progress = self._train_epoch(epoch, stop)
            if progress.stopped_by is not None and progress.batch < progress.steps:
                return self._save_on_stop(epoch, progress)
            self._end_epoch(epoch, progress.sums, progress.train_time, writer)
            if progress.stopped_by is not None:
                self.say(f"stopped by {progress.stopped_by} after epoch {epoch + 1}; checkpoint saved. "
                         f"Continue with: reslab train --resume {self.run_dir}")
                return progress.stopped_by
            if (self.run_dir / schema.STOP_REQUEST).is_file() and self.epoch_done < self.total_epochs:
                self.say(f"stopped after epoch {epoch + 1}: {self.run_dir / schema.STOP_REQUEST} asked for it; "
                         "checkpoint saved")
                return "stop_request"
            if self.stop_after_epoch is not None and self.epoch_done >= self.stop_after_epoch \
                    and self.epoch_done < self.total_epochs:
                return "stop_after_epoch"
        return None

    def _train_epoch(self, epoch: int, stop: _StopRequest) -> "_EpochProgress":
        """The optimizer steps of one epoch (from where a resumed run left off), until its end or a stop."""
        from tqdm import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

        c, d = self.config, self.dist
        self.loader.set_epoch(epoch)
        self.model.train()
        transfer.keep_bn_fixed(self.fixed_bn)
        steps = min(self.steps_per_epoch, self.total_iterations - epoch * self.steps_per_epoch)
        skip = self.skip_batches if epoch == self.start_epoch else 0
        partial = self.partial if (epoch == self.start_epoch and skip) else None
        progress = _EpochProgress(steps=steps, batch=skip,
                                  sums=torch.zeros(4, dtype=torch.float64, device=self.device),  # loss·n, wrong, n, samples
                                  window=torch.zeros((), dtype=torch.float64, device=self.device))
        if partial:
            progress.sums += torch.tensor([partial["loss_sum"], partial["wrong"], partial["count"],
                                           partial.get("samples", partial["count"])],
                                          dtype=torch.float64, device=self.device)
            progress.train_time = float(partial["train_time_s"])
        show_bar = self.is_main and not c.quiet and sys.stderr.isatty()
        bar = tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{self.total_epochs}", unit="step",
                   leave=False, disable=not show_bar, dynamic_ncols=True, file=sys.stderr)
        start = time.perf_counter()
        try:
            for index, (x, y) in enumerate(self.loader):
                if index < skip:
                    continue  # resuming mid-epoch: the plan of the epoch is the same, skip done batches
                if index >= steps:
                    break
                set_lr(self.optimizer, self.schedule.lr_at(self.iteration))
                loss_sum, wrong = self._guarded_step(x, y, epoch)
                self.iteration += 1
                progress.add(index + 1, loss_sum, wrong, y.numel(), self.task.samples(y))
                bar.update(1)
                if progress.batch % CHECK_EVERY == 0 or progress.batch == steps:
                    self._check_finite(progress.window, progress.window_count, epoch, bar)
                    progress.window.zero_()
                    progress.window_count = 0
                if d.any(stop.signal_name is not None):
                    progress.stopped_by = stop.signal_name or "signal on another rank"
                    break
                # A stop request (a pruned trial, a driver gone) is looked for as often as the loss
                # is checked: the run stops within a few steps, with a checkpoint, not an epoch later.
                if progress.batch % CHECK_EVERY == 0 and progress.batch < steps and \
                        d.any((self.run_dir / schema.STOP_REQUEST).is_file()):
                    progress.stopped_by = "stop_request"
                    break
        finally:
            bar.close()
        progress.train_time += time.perf_counter() - start
        return progress

    def _guarded_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_step`, with out-of-memory and a failing ``torch.compile`` turned into clear errors."""
        c = self.config
        try:
            return self._step(x, y)
        except Exception as exc:  # noqa: BLE001
            if _is_oom(exc):
                raise _oom_error(c, self.per_rank_batch, self.device, f"in epoch {epoch + 1}") from None
            if c.compile and self.iteration == 0 and not isinstance(exc, ReslabError):
                raise TrainingError(f"torch.compile failed ({type(exc).__name__}: {exc}); train without "
                                    "--set compile=true") from None
            raise

    def _save_on_stop(self, epoch: int, progress: "_EpochProgress") -> str:
        """Save a stopped epoch where it stands, so ``--resume`` continues at the very next batch."""
        d = self.dist
        self._check_finite(progress.window, max(progress.window_count, 1), epoch, None)
        # Ranks resume from rank 0's file, so store the global sums / W: every rank adds
        # that share back and the epoch-end all-reduce restores the global total.
        loss_sum, wrong, count, samples = (self.dist.all_reduce_sum(progress.sums.clone()) / d.world_size).tolist()
        self._save(finished=False, epoch_done=epoch, batch_in_epoch=progress.batch, snapshot=False,
                   partial={"loss_sum": loss_sum, "wrong": wrong, "count": count, "samples": samples,
                            "train_time_s": progress.train_time})
        self.say(f"stopped by {progress.stopped_by} in epoch {epoch + 1} at iteration {self.iteration}; checkpoint "
                 f"saved. Continue with: reslab train --resume {self.run_dir}")
        return progress.stopped_by

    def _check_finite(self, window: torch.Tensor, count: int, epoch: int, bar) -> None:
        value = float(window) / max(count, 1)
        bad = not math.isfinite(value)
        if self.dist.any(bad):
            last = rundir.state_path(self.run_dir)
            kept = (f"the last good checkpoint {last} (iteration {self._saved_iteration()}) is kept"
                    if last.is_file() else "no checkpoint had been saved yet")
            raise TrainingError(
                f"the training loss became {value} in epoch {epoch + 1} near iteration "
                f"{self.iteration} (lr {self.schedule.lr_at(max(self.iteration - 1, 0)):.4g}); training stopped and "
                f"{kept}. Lower --lr, add warm-up (--set warmup=500) or clip gradients (--set grad_clip=1)")
        if bar is not None and not bar.disable:
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{self.schedule.lr_at(self.iteration - 1):.3g}", refresh=False)

    def _saved_iteration(self) -> str:
        try:
            return str(ckpt.load_state(rundir.state_path(self.run_dir))["iteration"])
        except ReslabError:
            return "?"

    def _maybe_end_warmup(self, train_error: float | None) -> None:
        """End an error-triggered warm-up after the first epoch below ``warmup_until_error``."""
        limit = self.config.warmup_until_error
        if not limit or train_error is None or self.iteration >= self.schedule.warmup:
            return
        if train_error < limit:
            self.schedule = dataclasses.replace(self.schedule, warmup=self.iteration)
            self.say(f"warm-up ended at iteration {self.iteration}: training error {100 * train_error:.1f}% < "
                     f"{100 * limit:.0f}%; lr {self.schedule.lr_at(self.iteration):.4g} from here")

    def _end_epoch(self, epoch: int, sums: torch.Tensor, train_time: float, writer) -> None:
        c = self.config
        eval_start = time.perf_counter()
        loss_sum, wrong, count, samples = self.dist.all_reduce_sum(sums).tolist()
        last_epoch = epoch + 1 == self.total_epochs
        test: dict[str, Any] = {}
        if (epoch + 1) % c.eval_every == 0 or last_epoch or (
                self.stop_after_epoch is not None and epoch + 1 >= self.stop_after_epoch):
            self._sync_buffers()
            test.update(self._evaluate(self.model, "test"))
            if c.test_flip:
                test.update(self._evaluate(self.model, "test_flip", flip=True))
            if self.ema is not None:
                test.update(self._evaluate(self.ema.module, "ema_test"))
        eval_time = time.perf_counter() - eval_start
        train_metrics = self.task.train_metrics(loss_sum, wrong, count)
        # The columns every task shares come first, in one order (metrics.csv's); a task's own follow.
        shared = {"train_loss": train_metrics.pop("train_loss"), "train_error": train_metrics.pop("train_error")}
        for key in ("test_loss", "test_error", "test_flip_loss", "test_flip_error", "ema_test_loss", "ema_test_error"):
            shared[key] = test.pop(key, None)
        record = {
            "epoch": epoch + 1,
            "iteration": self.iteration,
            "lr": self.schedule.lr_at(self.iteration - 1),
            **shared,
            "images_per_s": samples / train_time if train_time > 0 else None,
            "epoch_time_s": train_time + eval_time,
            "elapsed_s": self._elapsed(),
            **train_metrics,
            **test,
        }
        self._maybe_end_warmup(record["train_error"])
        self.metrics.append(record)
        self.epoch_done = epoch + 1
        finished = self.iteration >= self.total_iterations
        snapshot = c.save_every > 0 and (epoch + 1) % c.save_every == 0
        self._save(finished=finished, epoch_done=epoch + 1, batch_in_epoch=0, partial=None, snapshot=snapshot)
        if self.is_main:
            rundir.write_metrics(self.run_dir, self.metrics)
            if writer is not None:
                for key, value in record.items():
                    if key not in ("epoch", "iteration") and value is not None:
                        writer.add_scalar(key, value, self.iteration)
                writer.flush()
        self.say(_epoch_line(record, self.total_epochs, self.task, self._unit(short=True)))


def _epoch_line(record: dict[str, Any], total_epochs: int, task: Task, unit: str = "img") -> str:
    parts = [f"epoch {record['epoch']}/{total_epochs}", f"lr {record['lr']:.4g}", *task.epoch_parts(record)]
    if record.get("test_flip_error") is not None:
        parts.append(f"error with flips {100 * record['test_flip_error']:.2f}%")
    if record["ema_test_error"] is not None:
        parts.append(f"EMA test error {100 * record['ema_test_error']:.2f}%")
    if record["images_per_s"] is not None:
        parts.append(f"{record['images_per_s']:.0f} {unit}/s")
    parts.append(f"{record['epoch_time_s']:.1f} s")
    return " | ".join(parts)

