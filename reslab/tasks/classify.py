"""``classify``: one label per image (or per vector) — the residual family's home task.

Data: any registered image or vector dataset (digits, CIFAR, image folders, synthetic), held on the
device as uint8 and augmented there (:class:`~reslab.data.DeviceLoader`: pad-and-crop, flips,
cutout). Metrics: cross-entropy and top-1 error, optionally with test-time flips.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from reslab.data import AugmentConfig, DeviceLoader, load_dataset
from reslab.errors import ConfigError, TrainingError
from reslab.models import model_info
from reslab.tasks.base import Task, register_task
from reslab.tasks.common import check_batch, sized_model


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


class Classify(Task):
    name = "classify"
    description = "one class per image or vector: cross-entropy, top-1 error"
    unit = ("images", "img")
    unused: dict = {}

    def claims(self, model: str, data: str) -> bool:
        return False  # the task of every pair no other task claims

    def default_recipe(self, data: str) -> str:
        return {"digits": "digits-quick"}.get(data.lower(), "cifar10-fast")

    def load_data(self, config, *, download: bool = False, progress: bool = True):
        return load_dataset(config.data, data_dir=config.data_dir, download=download, progress=progress,
                            **config.data_options)

    def build_model(self, config, dataset) -> nn.Module:
        family = model_info(config.model).family
        if family == "segmentation":
            raise ConfigError(f"{config.model} is a segmentation model (per-pixel classes); train it on segmentation "
                              f"data: reslab train {config.model} --data shapes")
        if family == "sequence":
            raise ConfigError(f"model {config.model!r} reads text (character tokens), but dataset {dataset.name!r} "
                              "holds images; use --data text (Python's help topics) or --data text --data-dir "
                              "YOUR_FILE.txt")
        return sized_model(config.model, dataset.num_classes, dataset.in_chans, dataset.image_size,
                           config.model_options)

    def check(self, config, model: nn.Module, dataset) -> None:
        check_batch(config.batch_size, config.accumulate, 1, dataset.num_train, config.data)

    def loaders(self, config, dataset, *, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1):
        c, ds = config, dataset
        check_batch(c.batch_size, c.accumulate, world_size, ds.num_train, c.data)
        try:
            train = DeviceLoader(
                ds.train_images, ds.train_labels, batch_size=batch_size, device=device, train=True,
                augment=AugmentConfig(crop_padding=c.crop_padding, flip=c.flip, cutout=c.cutout),
                mean=ds.mean, std=ds.std, seed=c.seed, drop_last=True, rank=rank, world_size=world_size,
                channels_last=c.channels_last)
            test = None
            if ds.test_images.shape[0] > 0:
                test = DeviceLoader(ds.test_images, ds.test_labels, batch_size=c.eval_batch_size, device=device,
                                    train=False, mean=ds.mean, std=ds.std, rank=rank, world_size=world_size,
                                    channels_last=c.channels_last)
        except Exception as exc:  # noqa: BLE001
            if is_oom(exc):
                raise TrainingError(f"the dataset does not fit in {device} memory ({exc}); use a smaller dataset "
                                    "or another device") from None
            raise
        return train, test

    def augment(self, config) -> str:
        return config.augment_summary

    def summary_parts(self, last: Mapping[str, Any]) -> list[str]:
        parts = super().summary_parts(last)
        if last.get("test_flip_error") is not None:
            parts.append(f"| with test-time flips {100 * (1 - last['test_flip_error']):.2f}%")
        return parts

    def facts(self, dataset, model: nn.Module) -> dict[str, Any]:
        return {"class_names": list(dataset.class_names)}


register_task(Classify)
