"""``segment``: a class per pixel — U-Nets on any residual (or plain) encoder.

Data: ``shapes`` (generated) or ``segfolder:DIR`` (``DIR/images/`` + ``DIR/masks/``), held on the
device as uint8; each epoch a seeded permutation and joint augmentation (the same horizontal —
optionally vertical — flip of an image and its mask). Loss: per-pixel cross-entropy. Metrics:
pixel accuracy and the confusion-matrix mean IoU (IoU_c = TP / (TP + FP + FN) per class, averaged
over the classes that occur in the masks or the predictions). ``train_error``/``test_error`` are
pixel errors (1 − pixel accuracy), so the report's generic sections show segmentation runs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.segmentation import SEGMENTATION_DATA, is_segmentation_data, load_segmentation
from reslab.errors import ConfigError
from reslab.settings import Settings, setting
from reslab.tasks.base import Task, register_task
from reslab.tasks.common import autocast_context, check_batch, model_device, sized_model


@dataclass(frozen=True)
class SegmentSettings(Settings):
    """What segmentation adds to the engine's settings (``--task-option KEY=VALUE``)."""

    vflip: bool = setting(False, "random vertical flips of image and mask together")


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


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float().div_(255.0) - mean) / std


def _stats(values, device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


class MaskLoader:
    """Batches ``(x, y)`` of a segmentation split on the device: x float ``(B, C, H, W)`` normalised,
    y int64 ``(B, H, W)``.

    Training: the order and the flips of epoch ``e`` come from ``(seed, e)`` alone, so a resumed
    run sees the same batches; each global batch of ``batch_size × world_size`` images is dealt
    out rank by rank (rank r takes every world_size-th). Evaluation: in order, rank r every
    world_size-th image, the last batch partial.
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, batch_size: int, device: torch.device, *,
                 mean, std, train: bool, seed: int = 0, flip: bool = True, vflip: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        self.device = torch.device(device)
        self.images, self.masks = images.to(self.device), masks.to(self.device)
        self.batch_size, self.train, self.seed = int(batch_size), bool(train), int(seed)
        self.flip, self.vflip, self.rank, self.world_size = bool(flip), bool(vflip), int(rank), int(world_size)
        self.mean, self.std = _stats(mean, self.device), _stats(std, self.device)
        self.dataset_size = int(images.shape[0])
        self.epoch = 0
        if self.train:
            self._num_batches = self.dataset_size // (self.batch_size * self.world_size)
        else:
            self._mine = torch.arange(self.rank, self.dataset_size, self.world_size)
            self._num_batches = -(-len(self._mine) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self):
        if not self.train:
            for start in range(0, len(self._mine), self.batch_size):
                index = self._mine[start:start + self.batch_size].to(self.device)
                yield normalize(self.images[index], self.mean, self.std), self.masks[index].long()
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator)
        hflips = torch.rand(self.dataset_size, generator=generator) < 0.5
        vflips = torch.rand(self.dataset_size, generator=generator) < 0.5
        size = self.batch_size * self.world_size
        for step in range(self._num_batches):
            index = order[step * size:(step + 1) * size][self.rank::self.world_size]
            x, y = self.images[index.to(self.device)], self.masks[index.to(self.device)]
            for on, flips, dim in ((self.flip, hflips, -1), (self.vflip, vflips, -2)):
                if on:
                    chosen = flips[index].to(self.device)
                    x = torch.where(chosen.view(-1, 1, 1, 1), x.flip(dim), x)
                    y = torch.where(chosen.view(-1, 1, 1), y.flip(dim), y)
            yield normalize(x, self.mean, self.std), y.long()


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, mean, std,
                          num_classes: int, batch_size: int = 64, device: str | torch.device | None = None
                          ) -> SegmentationScores:
    """Scores of ``model`` (put in eval mode) on uint8 ``images: (N, C, H, W)`` and ``masks: (N, H, W)``."""
    device = torch.device(device) if device is not None else model_device(model)
    loader = MaskLoader(images, masks, batch_size, device, mean=mean, std=std, train=False)
    return scores_from_sums(confusion_sums(model, loader, num_classes), num_classes)


@torch.no_grad()
def confusion_sums(model: nn.Module, batches, num_classes: int, bf16: bool = False) -> torch.Tensor:
    """``[loss·pixels, K×K confusion counts...]`` as one float64 vector on the model's device."""
    device = model_device(model)
    sums = torch.zeros(1 + num_classes * num_classes, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            with autocast_context(device, bf16):
                logits = model(x).float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1:] += confusion_matrix(logits.argmax(1), y, num_classes).reshape(-1).double()
    finally:
        model.train(was_training)
    return sums


def scores_from_sums(sums: torch.Tensor, num_classes: int) -> SegmentationScores:
    sums = sums.cpu()
    confusion = sums[1:].round().long().reshape(num_classes, num_classes)
    pixels = int(confusion.sum())
    return SegmentationScores(confusion, float(sums[0]) / pixels if pixels else None)


class Segment(Task):
    name = "segment"
    description = "a class per pixel (U-Nets): pixel accuracy and mean IoU"
    settings = SegmentSettings
    unit = ("images", "img")
    unused = {"crop_padding": 0, "cutout": 0, "test_flip": False}
    resumable = frozenset()
    exclusive = True

    def claims(self, model: str, data: str) -> bool:
        return model.startswith("unet_") or is_segmentation_data(data)

    def default_recipe(self, data: str) -> str:
        return "shapes-unet"

    def augment(self, config) -> str:
        flips = [name for name, on in (("horizontal", config.flip),
                                       ("vertical", self.options(config.task_options).vflip)) if on]
        return f"{' and '.join(flips)} flips of image and mask together" if flips else "none"

    def load_data(self, config, *, download: bool = False, progress: bool = True):
        if not is_segmentation_data(config.data):
            names = ", ".join(f"{n}:DIR" if n == "segfolder" else n for n in SEGMENTATION_DATA)
            raise ConfigError(f"{config.model} is a segmentation model; it trains on segmentation data ({names}), "
                              f"not {config.data!r} (classification data: train a classifier such as "
                              f"{config.model.removeprefix('unet_')} on it)")
        return load_segmentation(config.data, config.data_dir, **config.data_options)

    def build_model(self, config, dataset) -> nn.Module:
        from reslab.models.unet import UNet  # noqa: PLC0415 - the one model class this task needs by name

        if not config.model.startswith("unet_"):
            raise ConfigError(f"--data {config.data} is segmentation data (masks, not labels); train a U-Net on it, "
                              f"unet_{{encoder}}: e.g. reslab train unet_{config.model} --data {config.data}")
        model = sized_model(config.model, dataset.num_classes, dataset.in_chans, None, config.model_options)
        if not isinstance(model, UNet):
            raise ConfigError(f"{config.model!r} is not a segmentation model; use unet_{{encoder}}, e.g. unet_resnet18")
        h, w = dataset.image_size
        if h % model.reduction or w % model.reduction:
            r = model.reduction
            raise ConfigError(f"{config.model} needs images whose sides are multiples of {r} (its encoder reduces "
                              f"by {r}); {dataset.name!r} has {h}×{w} images: use image_size="
                              f"{max(r, round(h / r) * r)} (--data-option image_size=N) or an encoder that reduces "
                              "less (CIFAR encoders, e.g. unet_resnet20, reduce by 4)")
        return model

    def check(self, config, model: nn.Module, dataset) -> None:
        check_batch(config.batch_size, config.accumulate, 1, dataset.num_train, config.data)

    def loaders(self, config, dataset, *, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1):
        check_batch(config.batch_size, config.accumulate, world_size, dataset.num_train, config.data)
        options = self.options(config.task_options)
        ds = dataset
        train = MaskLoader(ds.train_images, ds.train_masks, batch_size, device, mean=ds.mean, std=ds.std, train=True,
                           seed=config.seed, flip=config.flip, vflip=options.vflip, rank=rank, world_size=world_size)
        test = None
        if ds.num_test:
            test = MaskLoader(ds.test_images, ds.test_masks, config.eval_batch_size, device, mean=ds.mean,
                              std=ds.std, train=False, rank=rank, world_size=world_size)
        return train, test

    def samples(self, y: torch.Tensor) -> int:
        return int(y.shape[0])  # images, not pixels

    def evaluate(self, model: nn.Module, loader, *, bf16: bool = False, flip: bool = False) -> torch.Tensor:
        return confusion_sums(model, loader, _num_classes(model), bf16)

    def test_metrics(self, sums: torch.Tensor, prefix: str = "test") -> dict[str, Any]:
        k = int(round((sums.numel() - 1) ** 0.5))
        scores = scores_from_sums(sums, k)
        return {f"{prefix}_loss": scores.loss, f"{prefix}_error": 1.0 - scores.pixel_accuracy,
                f"{prefix}_pixel_accuracy": scores.pixel_accuracy, f"{prefix}_miou": scores.miou,
                f"{prefix}_iou": scores.iou}

    def train_metrics(self, loss_sum: float, wrong: float, count: float) -> dict[str, Any]:
        metrics = super().train_metrics(loss_sum, wrong, count)
        error = metrics["train_error"]
        metrics["train_pixel_accuracy"] = None if error is None else 1.0 - error
        return metrics

    def epoch_parts(self, record: Mapping[str, Any]) -> list[str]:
        parts = [f"train loss {record['train_loss']:.4f} pixel acc {100 * (1 - record['train_error']):.2f}%"]
        if record.get("test_miou") is not None:
            parts.append(f"test loss {record['test_loss']:.4f} pixel acc {100 * record['test_pixel_accuracy']:.2f}% "
                         f"mIoU {100 * record['test_miou']:.2f}%")
        return parts

    def summary_parts(self, last: Mapping[str, Any]) -> list[str]:
        if last.get("test_miou") is None:
            return ["no test set"]
        return [f"test mIoU {100 * last['test_miou']:.2f}%, pixel accuracy {100 * last['test_pixel_accuracy']:.2f}%"]

    def facts(self, dataset, model: nn.Module) -> dict[str, Any]:
        return {"class_names": list(dataset.class_names), "encoder": model.encoder_name,
                "encoder_kind": "plain" if model.is_plain else "residual",
                "decoder_channels": list(model.decoder_channels), "input_multiple": model.reduction,
                "class_frequencies": [round(f, 6) for f in dataset.class_frequencies()]}


def _num_classes(model: nn.Module) -> int:
    classes = getattr(model, "num_classes", None)
    if classes is None:
        raise ConfigError(f"{type(model).__name__} does not say how many classes it predicts (num_classes)")
    return int(classes)


register_task(Segment)

__all__ = ["MaskLoader", "Segment", "SegmentSettings", "SegmentationScores", "confusion_matrix", "confusion_sums",
           "evaluate_segmentation", "scores_from_sums"]
