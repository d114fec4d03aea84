"""Builders of tiny datasets in the real on-disk formats (CIFAR pickles, image folders)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(path: Path, obj: dict, str_keys: bool) -> None:
    if not str_keys:
        obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(parent: Path, per_batch: int = 6, n_test: int = 5, seed: int = 0, str_keys: bool = False) -> Path:
    """Write cifar-10-batches-py/ under ``parent`` with 5 tiny train batches; returns the directory."""
    rng = np.random.default_rng(seed)
    directory = parent / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for k in range(1, 6):
        _dump(directory / f"data_batch_{k}", {
            "batch_label": f"training batch {k} of 5",
            "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }, str_keys)
    _dump(directory / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in rng.integers(0, 10, n_test)],
        "data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
    }, str_keys)
    _dump(directory / "batches.meta", {"label_names": [n.encode() for n in CIFAR10_NAMES], "num_vis": 3072},
          str_keys)
    return directory


def write_cifar100(parent: Path, n_train: int = 12, n_test: int = 4, seed: int = 0) -> Path:
    """Write cifar-100-python/ (train, test, meta) under ``parent``; returns the directory."""
    rng = np.random.default_rng(seed)
    directory = parent / "cifar-100-python"
    directory.mkdir(parents=True)
    for name, count in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, count)
        _dump(directory / name, {
            "fine_labels": [int(v) for v in fine],
            "coarse_labels": [int(v) // 5 for v in fine],
            "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        }, str_keys=False)
    _dump(directory / "meta", {
        "fine_label_names": [f"fine{k}".encode() for k in range(100)],
        "coarse_label_names": [f"coarse{k}".encode() for k in range(20)],
    }, str_keys=False)
    return directory


def read_batch(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def write_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path / "data")


@pytest.fixture
def cifar100_dir(tmp_path: Path) -> Path:
    return write_cifar100(tmp_path / "data")


@pytest.fixture
def make_cifar10():
    return write_cifar10


@pytest.fixture
def make_cifar100():
    return write_cifar100


@pytest.fixture
def make_image():
    return write_image


@pytest.fixture
def read_cifar_batch():
    return read_batch
