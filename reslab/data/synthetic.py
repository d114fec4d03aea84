"""``synthetic``: random uint8 images and labels, for benchmarks and tests (nothing to learn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reslab.data._options import check_options, int_option
from reslab.data.dataset import ImageDataset
from reslab.data.registry import register_dataset
from reslab.errors import ConfigError

OPTIONS = {
    "num_train": "training images, default 1024",
    "num_test": "test images, default 256",
    "image_size": "side length in pixels, default 32",
    "channels": "1 or 3, default 3",
    "num_classes": "default 10",
    "seed": "default 0",
}


def load(data_dir: str | Path | None = None, download: bool = False, **options: Any) -> ImageDataset:
    """Random images uint8 (N, C, S, S) with uniform labels; same seed gives the same tensors.

    ``data_dir`` and ``download`` are ignored.
    """
    check_options("synthetic", options, OPTIONS)
    num_train = int_option("synthetic", "num_train", options.get("num_train", 1024), 1)
    num_test = int_option("synthetic", "num_test", options.get("num_test", 256), 0)
    size = int_option("synthetic", "image_size", options.get("image_size", 32), 1)
    channels = int_option("synthetic", "channels", options.get("channels", 3), 1)
    num_classes = int_option("synthetic", "num_classes", options.get("num_classes", 10), 1)
    seed = int_option("synthetic", "seed", options.get("seed", 0), 0)
    if channels not in (1, 3):
        raise ConfigError(f"dataset 'synthetic': option channels={channels} must be 1 or 3")
    generator = torch.Generator().manual_seed(seed)
    total = num_train + num_test
    images = torch.randint(0, 256, (total, channels, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (total,), generator=generator, dtype=torch.int64)
    return ImageDataset(
        train_images=images[:num_train].contiguous(),
        train_labels=labels[:num_train].contiguous(),
        test_images=images[num_train:].contiguous(),
        test_labels=labels[num_train:].contiguous(),
        class_names=[f"class_{k}" for k in range(num_classes)],
        name="synthetic",
        source=f"synthetic (random, seed {seed})",
        options=dict(num_train=num_train, num_test=num_test, image_size=size, channels=channels,
                     num_classes=num_classes, seed=seed),
    )


register_dataset("synthetic", load, description="random images with uniform labels, seeded", directory="none")
