"""Training a U-Net for segmentation: ``train_segmentation(config) -> SegmentResult``.

```python
from reslab.train.segment import SegmentConfig, train_segmentation
result = train_segmentation(SegmentConfig(model="unet_resnet18", data="shapes", epochs=8, out="runs/seg"))
print(result.summary())          # test mIoU and pixel accuracy
```

The loop is the classifier's idea at its smallest: the data on the device as uint8, a seeded
permutation and joint augmentation (the same horizontal — optionally vertical — flip of an image
and its mask) per epoch, per-pixel cross-entropy, Adam (default, lr 1e-3) or SGD with momentum
under a cosine (or constant) schedule per step. After every epoch it measures the test split's
loss, pixel accuracy and mean IoU (the confusion-matrix mIoU: IoU_c = TP / (TP + FP + FN) per
class, averaged over the classes that occur in the masks or the predictions) and writes the run
directory the classifier writes (:mod:`reslab.store.rundir`): ``config.json`` (with
``"task": "segment"``), ``metrics.jsonl``/``.csv``, atomic safetensors checkpoints
(``init``, ``last``, ``epoch_K`` every ``save_every``) and ``last.state.pt`` to resume from.
A second writer of the same run directory and a fresh run in an existing one are refused as
the classifier refuses them. ``test_error`` / ``train_error`` in the metrics are pixel errors
(1 − pixel accuracy), so the report's generic sections show segmentation runs too.

Determinism: the seed fixes the initial weights, the data order and the flips; on CPU the same
seed gives the same metrics.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.segmentation import (
    SegmentationDataset,
    is_segmentation_data,
    load_segmentation,
)
from reslab.errors import CheckpointError, ConfigError, TrainingError
from reslab.models import create_model
from reslab.settings import Settings, setting
from reslab.store.lock import RunDirLock, check_unlocked
from reslab.train import checkpoint as ckpt
from reslab.train import rundir
from reslab.utils import resolve_device, seed_everything

TASK = "segment"
#: Defaults that depend on the optimizer (``lr``/``weight_decay`` left at ``None``).
OPTIMIZER_DEFAULTS = {"adam": {"lr": 1e-3, "weight_decay": 0.0}, "sgd": {"lr": 0.05, "weight_decay": 1e-4}}
#: Settings that may change when a run is resumed.
RESUMABLE = frozenset({"epochs", "quiet", "device", "threads", "out", "save_every", "eval_batch_size", "data_dir"})
CHECK_EVERY = 10


@dataclass(frozen=True)
class SegmentConfig(Settings):
    """Every setting of a segmentation run (``reslab train MODEL --task segment`` fills it)."""

    model: str = setting("unet_resnet18", "a U-Net: unet_{encoder}, e.g. unet_resnet18, unet_plain18")
    model_options: dict[str, Any] = setting(default_factory=dict, help="options of the model (shortcut, "
                                                                       "decoder_channels, ...)")
    data: str = setting("shapes", "shapes (generated) or segfolder:DIR (DIR/images/ + DIR/masks/)")
    data_dir: str | None = setting(None, "the folder of segfolder, when --data segfolder has none")
    data_options: dict[str, Any] = setting(default_factory=dict, help="options of the data (num_train, image_size, ...)")
    epochs: int = setting(8, "epochs to train", minimum=1)
    batch_size: int = setting(8, "images per step", minimum=1)
    eval_batch_size: int = setting(64, "images per test batch", minimum=1)
    optimizer: Literal["adam", "sgd"] = setting("adam", "adam, or sgd with momentum")
    lr: float | None = setting(None, "peak learning rate (default 1e-3 for adam, 0.05 for sgd)", minimum=0)
    momentum: float = setting(0.9, "SGD momentum", minimum=0, maximum=0.999)
    weight_decay: float | None = setting(None, "weight decay (default 0 for adam, 1e-4 for sgd)", minimum=0)
    schedule: Literal["cosine", "constant"] = setting("cosine", "learning rate per step: cosine to 0, or constant")
    flip: bool = setting(True, "random horizontal flips of image and mask together")
    vflip: bool = setting(False, "random vertical flips of image and mask together")
    seed: int = setting(0, "seed of the weights, the data order and the flips", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda, cuda:1")
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", minimum=0)
    save_every: int = setting(0, "also save checkpoints/epoch_K.safetensors every N epochs (0: never)", minimum=0)
    out: str | None = setting(None, "run directory (default runs/MODEL-DATA)")
    quiet: bool = setting(False, "no per-epoch lines")

    def check(self) -> None:
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be a number > 0, got {self.lr}")
        if not self.model.startswith("unet_"):
            raise ConfigError(f"--task segment needs a segmentation model, unet_{{encoder}}: unet_{self.model} is a "
                              f"U-Net on {self.model}'s layers (any ResNet-family encoder; e.g. unet_resnet18, "
                              f"unet_plain18); {self.model!r} itself is a classifier")
        if not is_segmentation_data(self.data):
            raise ConfigError(f"--task segment needs segmentation data: --data shapes (generated) or "
                              f"--data segfolder:DIR (DIR/images/ + DIR/masks/); {self.data!r} is classification data: "
                              "train a classifier on it without --task segment")

    @property
    def resolved_lr(self) -> float:
        return OPTIMIZER_DEFAULTS[self.optimizer]["lr"] if self.lr is None else self.lr

    @property
    def resolved_weight_decay(self) -> float:
        return OPTIMIZER_DEFAULTS[self.optimizer]["weight_decay"] if self.weight_decay is None else self.weight_decay

    @property
    def augment_summary(self) -> str:
        parts = [name for name, on in (("horizontal flip", self.flip), ("vertical flip", self.vflip)) if on]
        return " + ".join(parts) + " (image and mask together)" if parts else "none"


# -- scores --------------------------------------------------------------------------------------
@dataclass
class SegmentationScores:
    """Pixel accuracy, per-class IoU and their mean, from a ``(K, K)`` confusion matrix
    (rows: true class, columns: predicted); ``loss`` the mean per-pixel cross-entropy."""

    confusion: torch.Tensor
    loss: float | None = None

    @property
    def pixel_accuracy(self) -> float:
        total = float(self.confusion.sum())
        return float(self.confusion.diag().sum()) / total if total else float("nan")

    @property
    def iou(self) -> list[float | None]:
        """IoU per class; ``None`` for a class absent from both masks and predictions."""
        cm = self.confusion.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return [float(t / u) if u > 0 else None for t, u in zip(tp, union)]

    @property
    def miou(self) -> float:
        present = [v for v in self.iou if v is not None]
        return sum(present) / len(present) if present else float("nan")


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` int64 counts of (true class, predicted class) over all pixels."""
    index = target.reshape(-1).long() * num_classes + predicted.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float().div_(255.0) - mean) / std


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, mean, std,
                          num_classes: int, batch_size: int = 64, device: str | torch.device | None = None
                          ) -> SegmentationScores:
    """Scores of ``model`` (put in eval mode) on uint8 ``images: (N, C, H, W)`` and ``masks: (N, H, W)``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for start in range(0, images.shape[0], batch_size):
            x = _normalize(images[start:start + batch_size].to(device), mean_t, std_t)
            y = masks[start:start + batch_size].to(device).long()
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            confusion += confusion_matrix(logits.argmax(1), y, num_classes)
    finally:
        model.train(was_training)
    pixels = int(confusion.sum())
    return SegmentationScores(confusion.cpu(), float(loss_sum) / pixels if pixels else None)


# -- results -------------------------------------------------------------------------------------
@dataclass
class SegmentResult:
    """What :func:`train_segmentation` produced (``model`` in eval mode on the CPU)."""

    run_dir: Path
    config: SegmentConfig
    model: nn.Module
    epoch: int
    iteration: int
    total_iterations: int
    metrics: list[dict[str, Any]]
    finished: bool
    elapsed_s: float
    stopped_by: str | None = None
    notes: list[str] = field(default_factory=list)

    def _last(self, key: str):
        for record in reversed(self.metrics):
            if record.get(key) is not None:
                return record[key]
        return None

    @property
    def test_miou(self) -> float | None:
        return self._last("test_miou")

    @property
    def test_pixel_accuracy(self) -> float | None:
        return self._last("test_pixel_accuracy")

    def summary(self) -> str:
        c = self.config
        parts = [f"{c.model} on {c.data}:"]
        if self.test_miou is not None:
            parts.append(f"test mIoU {100 * self.test_miou:.2f}%, pixel accuracy {100 * self.test_pixel_accuracy:.2f}%")
        else:
            parts.append("no test set")
        state = "done" if self.finished else f"stopped ({self.stopped_by})"
        parts.append(f"| {self.epoch} epochs, {self.iteration}/{self.total_iterations} iterations, "
                     f"{self.elapsed_s:.1f} s, {state} | run: {self.run_dir}")
        return " ".join(parts)


def default_run_dir(model: str, data: str) -> Path:
    """``runs/MODEL-DATA`` (``segfolder:path/to/dir`` → ``segfolder-dir``)."""
    kind, _, rest = data.partition(":")
    name = f"{kind}-{Path(rest).name}" if rest else kind
    return rundir.default_run_dir(model, name)


def segmentation_model(name: str, dataset: SegmentationDataset, options: dict[str, Any] | None = None) -> nn.Module:
    """``create_model(name)`` for ``dataset``'s classes and channels, checked to be a U-Net that takes its size."""
    from reslab.models.unet import UNet  # noqa: PLC0415

    model = create_model(name, num_classes=dataset.num_classes, in_chans=dataset.in_chans, **dict(options or {}))
    if not isinstance(model, UNet):
        raise ConfigError(f"{name!r} is not a segmentation model; use unet_{{encoder}}, e.g. unet_resnet18")
    h, w = dataset.image_size
    if h % model.reduction or w % model.reduction:
        r = model.reduction
        raise ConfigError(f"{name} needs images whose sides are multiples of {r} (its encoder reduces by {r}); "
                          f"{dataset.name!r} has {h}×{w} images: use image_size={max(r, round(h / r) * r)} "
                          "(--set data_options.image_size=N) or an encoder that reduces less (CIFAR encoders, "
                          "e.g. unet_resnet20, reduce by 4)")
    return model


# -- the loop ------------------------------------------------------------------------------------
def train_segmentation(config: SegmentConfig | None = None, *, resume: str | Path | None = None,
                       stop_after_epoch: int | None = None, **changes: Any) -> SegmentResult:
    """Train a U-Net as ``config`` says (keyword ``changes`` are applied to it), writing a run directory.

    resume: a segmentation run directory to continue from its ``last.state.pt`` (``config`` may then
        be omitted, or change only :data:`RESUMABLE` settings such as more ``epochs``).
    stop_after_epoch: save and return once this many epochs are done (continue with ``resume``).

    Raises ConfigError (bad settings, a run directory in use or already holding a run),
    DatasetError, ModelConfigError, CheckpointError (resuming a missing or damaged run) or
    TrainingError (a non-finite loss).
    """
    state = None
    if resume is not None:
        run_dir = Path(resume)
        saved = rundir.read_config(run_dir)
        if saved.get("task") != TASK:
            raise ConfigError(f"{str(run_dir)!r} holds a classification run, not a segmentation one; resume it "
                              "without --task segment")
        base = SegmentConfig.from_dict(saved, where=str(run_dir / rundir.CONFIG_FILE), strict=False)
        config = base if config is None else config
        config = config.replace(**changes) if changes else config
        different = sorted(k for k in SegmentConfig.field_names()
                           if k not in RESUMABLE and getattr(base, k) != getattr(config, k))
        if different:
            raise ConfigError(f"cannot change {', '.join(different)} when resuming {str(run_dir)!r}: it would not "
                              f"continue the same run; only {', '.join(sorted(RESUMABLE))} may change")
        config = config.replace(out=str(run_dir))
    else:
        config = SegmentConfig.of(config, **changes)
        run_dir = Path(config.out) if config.out else default_run_dir(config.model, config.data)
    if resume is not None:
        with RunDirLock(run_dir):
            state = ckpt.load_state(rundir.state_path(run_dir))
            return _SegmentTrainer(config, run_dir, state, stop_after_epoch).run()
    # A busy or used directory is refused at once; the directory (and its lock) is created only
    # once the data, the model and the batch size have passed, so a refused command leaves nothing.
    check_unlocked(run_dir)
    rundir.check_fresh(run_dir)
    trainer = _SegmentTrainer(config, run_dir, state, stop_after_epoch)
    trainer.build()
    with RunDirLock(run_dir):
        rundir.check_fresh(run_dir)  # another process may have trained into it meanwhile
        return trainer.run()


class _SegmentTrainer:
    def __init__(self, config: SegmentConfig, run_dir: Path, state: dict | None, stop_after_epoch: int | None):
        self.config = config
        self.run_dir = run_dir
        self.state = state
        self.stop_after_epoch = stop_after_epoch
        self.notes: list[str] = []
        self.built = False

    def say(self, message: str) -> None:
        if not self.config.quiet:
            print(f"reslab train: {message}", file=sys.stderr, flush=True)

    def build(self) -> None:
        """Data, model and optimizer: every check of the settings, nothing written."""
        if not self.built:
            self.session_start = time.perf_counter()  # loading the data counts in the session's time
            self._build()
            self.built = True

    def _build(self) -> None:
        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        self.device = resolve_device(c.device)
        seed_everything(c.seed)
        self.dataset = ds = load_segmentation(c.data, c.data_dir, **c.data_options)
        self.model = segmentation_model(c.model, ds, c.model_options)
        self.init_state = ckpt.cpu_state_dict(self.model.state_dict())
        if c.batch_size > ds.num_train:
            raise ConfigError(f"--batch-size {c.batch_size} is larger than the training set of {c.data!r} "
                              f"({ds.num_train} images); use --batch-size {ds.num_train} or less")
        self.steps_per_epoch = ds.num_train // c.batch_size  # full batches only: BatchNorm needs > 1 image
        self.total_iterations = c.epochs * self.steps_per_epoch
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=c.resolved_lr, weight_decay=c.resolved_weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=c.resolved_lr, momentum=c.momentum,
                                             weight_decay=c.resolved_weight_decay)
        # The whole split on the device as uint8: the CPU sets are small, a GPU reads no host memory per step.
        self.train_images = ds.train_images.to(self.device)
        self.train_masks = ds.train_masks.to(self.device)
        self.mean = torch.tensor(ds.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(ds.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        if ds.num_test == 0:
            self.notes.append(f"{c.data!r} has no test split: no test pixel accuracy or mIoU")

    def lr_at(self, iteration: int) -> float:
        lr = self.config.resolved_lr
        if self.config.schedule == "constant":
            return lr
        return 0.5 * lr * (1 + math.cos(math.pi * min(iteration, self.total_iterations) / self.total_iterations))

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def _resolved_config(self) -> dict[str, Any]:
        c, ds, model = self.config, self.dataset, self.model
        resolved = c.to_dict()
        resolved.update({
            "task": TASK, "out": str(self.run_dir), "lr": c.resolved_lr, "weight_decay": c.resolved_weight_decay,
            "num_classes": ds.num_classes, "in_chans": ds.in_chans, "image_size": list(ds.image_size),
            "mean": list(ds.mean), "std": list(ds.std), "class_names": list(ds.class_names),
            "data_source": ds.source, "dataset": ds.info(),
            "model_settings": dict(model.model_options), "encoder": model.encoder_name,
            "encoder_kind": "plain" if model.is_plain else "residual",
            "decoder_channels": list(model.decoder_channels), "input_multiple": model.reduction,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "device": str(self.device), "steps_per_epoch": self.steps_per_epoch,
            "total_iterations": self.total_iterations, "total_epochs": c.epochs,
            "augment": c.augment_summary, "notes": list(self.notes),
            "versions": rundir.versions(),
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        return resolved

    def run(self) -> SegmentResult:
        c = self.config
        self.build()
        self.elapsed_before = 0.0
        self.metrics: list[dict[str, Any]] = []
        self.iteration = 0
        start_epoch = 0
        resolved = self._resolved_config()
        if self.state is not None:
            start_epoch = self._restore(self.state)
            resolved["resumed_at_iteration"] = self.iteration
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(self.run_dir, resolved)
        if self.state is None:
            ckpt.save_weights(rundir.checkpoints_dir(self.run_dir) / "init.safetensors", self.init_state,
                              {"model": c.model, "epoch": 0, "iteration": 0})
        for note in self.notes:
            self.say(f"note: {note}")
        ds = self.dataset
        self.say(f"{c.model} ({'plain' if self.model.is_plain else 'residual'} encoder) on {ds.describe()}; "
                 f"{c.epochs} epochs of {self.steps_per_epoch} steps, batch {c.batch_size}, {c.optimizer} lr "
                 f"{c.resolved_lr:g} ({c.schedule}), {self.device}, run dir {self.run_dir}")
        stopped_by, epoch_done = None, start_epoch
        for epoch in range(start_epoch, c.epochs):
            self._end_epoch(epoch, *self._train_epoch(epoch))
            epoch_done = epoch + 1
            if self.stop_after_epoch is not None and epoch_done >= self.stop_after_epoch and epoch_done < c.epochs:
                stopped_by = "stop_after_epoch"
                break
        return SegmentResult(run_dir=self.run_dir, config=c, model=self.model.to("cpu").eval(), epoch=epoch_done,
                             iteration=self.iteration, total_iterations=self.total_iterations,
                             metrics=list(self.metrics), finished=stopped_by is None, elapsed_s=self._elapsed(),
                             stopped_by=stopped_by, notes=list(self.notes))

    def _batches(self, epoch: int):
        """This epoch's batches (x normalised float, y int64), augmented; the plan depends on (seed, epoch) only."""
        c = self.config
        generator = torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)
        order = torch.randperm(self.dataset.num_train, generator=generator)
        hflip = torch.rand(self.dataset.num_train, generator=generator) < 0.5
        vflip = torch.rand(self.dataset.num_train, generator=generator) < 0.5
        for step in range(self.steps_per_epoch):
            index = order[step * c.batch_size:(step + 1) * c.batch_size]
            x = self.train_images[index.to(self.device)]
            y = self.train_masks[index.to(self.device)]
            for on, flips in ((c.flip, hflip), (c.vflip, vflip)):
                if on:
                    dim = -1 if flips is hflip else -2
                    chosen = flips[index].to(self.device)
                    x = torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)
                    y = torch.where(chosen.view(-1, 1, 1), y.flip(dim), y)
            yield _normalize(x, self.mean, self.std), y.long()

    def _train_epoch(self, epoch: int) -> tuple[torch.Tensor, float]:
        model = self.model
        model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss·pixels, correct pixels, pixels
        window = torch.zeros((), dtype=torch.float64, device=self.device)
        start = time.perf_counter()
        for step, (x, y) in enumerate(self._batches(epoch), start=1):
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.iteration)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.iteration += 1
            with torch.no_grad():
                pixels = y.numel()
                sums[0] += loss.detach().double() * pixels
                sums[1] += (logits.argmax(1) == y).sum()
                sums[2] += pixels
                window += loss.detach().double()
            if step % CHECK_EVERY == 0 or step == self.steps_per_epoch:
                value = float(window)
                window.zero_()
                if not math.isfinite(value):
                    raise TrainingError(f"the training loss became {value} in epoch {epoch + 1} near iteration "
                                        f"{self.iteration} (lr {self.lr_at(self.iteration - 1):.4g}); training stopped "
                                        f"and the last checkpoint in {rundir.checkpoints_dir(self.run_dir)} is kept. "
                                        "Lower --lr")
        return sums, time.perf_counter() - start

    def _end_epoch(self, epoch: int, sums: torch.Tensor, train_time: float) -> None:
        c, ds = self.config, self.dataset
        eval_start = time.perf_counter()
        loss_sum, correct, pixels = sums.tolist()
        test = None
        if ds.num_test:
            test = evaluate_segmentation(self.model, ds.test_images, ds.test_masks, ds.mean, ds.std, ds.num_classes,
                                         c.eval_batch_size, self.device)
        train_accuracy = correct / pixels if pixels else None
        record = {
            "epoch": epoch + 1,
            "iteration": self.iteration,
            "lr": self.lr_at(self.iteration - 1),
            "train_loss": loss_sum / pixels if pixels else None,
            "train_error": None if train_accuracy is None else 1.0 - train_accuracy,
            "train_pixel_accuracy": train_accuracy,
            "test_loss": test.loss if test else None,
            "test_error": 1.0 - test.pixel_accuracy if test else None,
            "test_pixel_accuracy": test.pixel_accuracy if test else None,
            "test_miou": test.miou if test else None,
            "test_iou": test.iou if test else None,
            "images_per_s": self.steps_per_epoch * c.batch_size / train_time if train_time > 0 else None,
            "epoch_time_s": train_time + time.perf_counter() - eval_start,
            "elapsed_s": self._elapsed(),
        }
        self.metrics.append(record)
        snapshot = c.save_every > 0 and (epoch + 1) % c.save_every == 0
        self._save(epoch + 1, finished=epoch + 1 >= c.epochs, snapshot=snapshot)
        rundir.write_metrics(self.run_dir, self.metrics)
        self.say(epoch_line(record, c.epochs))

    # -- checkpoints --------------------------------------------------------------------------
    def _save(self, epoch_done: int, finished: bool, snapshot: bool) -> None:
        weights = ckpt.cpu_state_dict(self.model.state_dict())
        if not all(bool(torch.isfinite(t).all()) for t in weights.values() if t.dtype.is_floating_point):
            raise TrainingError("the weights are no longer finite (NaN/Inf); not saving them. The last good "
                                f"checkpoint in {rundir.checkpoints_dir(self.run_dir)} is kept")
        directory = rundir.checkpoints_dir(self.run_dir)
        meta = {"model": self.config.model, "task": TASK, "epoch": epoch_done, "iteration": self.iteration}
        ckpt.save_weights(directory / "last.safetensors", weights, meta)
        if snapshot:
            ckpt.save_weights(directory / ckpt.epoch_file(epoch_done), weights, meta)
        ckpt.save_state(rundir.state_path(self.run_dir), {
            "format": ckpt.STATE_FORMAT, "task": TASK, "epoch": epoch_done, "batch_in_epoch": 0,
            "iteration": self.iteration, "total_iterations": self.total_iterations, "finished": finished,
            "model": weights, "optimizer": self.optimizer.state_dict(), "rng": ckpt.capture_rng(),
            "metrics": list(self.metrics), "elapsed_s": self._elapsed(),
        })

    def _restore(self, state: dict) -> int:
        where = str(rundir.state_path(self.run_dir))
        ckpt.load_into(self.model, state["model"], where)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"the optimizer state in {where} does not match the model ({exc})") from None
        epoch = int(state["epoch"])
        if epoch >= self.config.epochs:
            raise ConfigError(f"the run in {str(self.run_dir)!r} already finished {epoch} of {self.config.epochs} "
                              "epochs; to train longer pass more --epochs")
        self.iteration = int(state["iteration"])
        self.metrics = list(state.get("metrics") or [])
        self.elapsed_before = float(state.get("elapsed_s") or 0.0)
        ckpt.restore_rng(state["rng"])
        return epoch


def epoch_line(record: dict[str, Any], total_epochs: int) -> str:
    """The per-epoch progress line."""
    parts = [f"epoch {record['epoch']}/{total_epochs}", f"lr {record['lr']:.4g}",
             f"train loss {record['train_loss']:.4f} pixel acc {100 * record['train_pixel_accuracy']:.2f}%"]
    if record.get("test_miou") is not None:
        parts.append(f"test loss {record['test_loss']:.4f} pixel acc {100 * record['test_pixel_accuracy']:.2f}% "
                     f"mIoU {100 * record['test_miou']:.2f}%")
    if record.get("images_per_s") is not None:
        parts.append(f"{record['images_per_s']:.0f} img/s")
    parts.append(f"{record['epoch_time_s']:.1f} s")
    return " | ".join(parts)


# -- loading a run back ------------------------------------------------------------------------------
@dataclass
class LoadedSegmentRun:
    model: nn.Module
    config: dict[str, Any]
    run_dir: Path
    checkpoint: Path

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class index per pixel ``(N, H, W)`` for uint8 ``images: (N, C, H, W)`` (normalised as in training)."""
        mean = torch.tensor(self.config["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(self.config["std"]).view(1, -1, 1, 1)
        with torch.no_grad():
            return self.model(_normalize(images, mean, std)).argmax(1)


def load_segment_run(run_dir: str | Path, checkpoint: str = "last") -> LoadedSegmentRun:
    """A segmentation run's model (eval mode, CPU) with the weights of ``checkpoint`` and its config."""
    run_dir = Path(run_dir)
    config = rundir.read_config(run_dir)
    if config.get("task") != TASK:
        raise CheckpointError(f"{str(run_dir)!r} is not a segmentation run (its config.json has no \"task\": "
                              f"\"{TASK}\"); load it with reslab.train.load_run")
    model = create_model(config["model"], num_classes=config["num_classes"], in_chans=config["in_chans"],
                         **dict(config.get("model_options") or {}))
    path = ckpt.checkpoint_path(run_dir, checkpoint)
    state, _ = ckpt.load_weights(path)
    ckpt.load_into(model, state, str(path))
    return LoadedSegmentRun(model.eval(), config, run_dir, path)


__all__ = [
    "LoadedSegmentRun",
    "SegmentConfig",
    "SegmentResult",
    "SegmentationScores",
    "confusion_matrix",
    "evaluate_segmentation",
    "load_segment_run",
    "segmentation_model",
    "train_segmentation",
]
