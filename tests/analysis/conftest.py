"""Tiny datasets for the analysis tests, made in memory (no files, no network)."""

from __future__ import annotations

import pytest
import torch

from reslab.data import ImageDataset


def tiny_dataset(num_train: int = 48, num_test: int = 40, size: int = 8, channels: int = 3, classes: int = 4,
                 seed: int = 0) -> ImageDataset:
    """Random uint8 images whose label is readable from the mean brightness (so trained nets can learn it)."""
    generator = torch.Generator().manual_seed(seed)
    total = num_train + num_test
    labels = torch.randint(0, classes, (total,), generator=generator)
    base = (labels.float() + 0.5) * (200.0 / classes)
    noise = torch.randint(-25, 26, (total, channels, size, size), generator=generator).float()
    images = (base.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    return ImageDataset(
        train_images=images[:num_train].contiguous(), train_labels=labels[:num_train].contiguous(),
        test_images=images[num_train:].contiguous(), test_labels=labels[num_train:].contiguous(),
        class_names=[f"c{k}" for k in range(classes)], name="tiny", source="made in the test",
    )


@pytest.fixture
def dataset() -> ImageDataset:
    return tiny_dataset()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread; on a busy shared CPU, intra-op threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
