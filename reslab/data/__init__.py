"""reslab.data: datasets as uint8 tensors + labels + class names, and device-resident batches.

```python
from reslab.data import load_dataset, DeviceLoader, AugmentConfig
ds = load_dataset("cifar10", data_dir="data")            # or "digits" (embedded), "synthetic", ...
loader = DeviceLoader(ds.train_images, ds.train_labels, batch_size=128, device="cuda",
                      augment=AugmentConfig(crop_padding=4, flip=True), mean=ds.mean, std=ds.std)
```
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from reslab.data.augment import AugmentConfig, normalize
from reslab.data.dataset import SUBSET_OPTIONS, ImageDataset, channel_stats, default_data_dir, select_classes
from reslab.data.loader import DeviceLoader
from reslab.data.text import SequenceLoader, TextDataset
from reslab.errors import DatasetError

#: Registry name -> module (in reslab.data) whose ``load(data_dir, download, **options)`` builds it.
_MODULES = {
    "digits": "digits",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "imagefolder": "imagefolder",
    "synthetic": "synthetic",
    "text": "text",
}
DATASETS: tuple[str, ...] = tuple(_MODULES)
_WITH_PROGRESS = ("cifar10", "cifar100", "imagefolder")


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 progress: bool = True, **options: Any) -> ImageDataset:
    """Load the dataset ``name`` (one of :data:`DATASETS`) into memory.

    data_dir: where to look for files (``cifar10``/``cifar100``: the parent of the batches
        directory or the directory itself, default ``$RESLAB_DATA`` then ``./data``;
        ``imagefolder``: the folder of class folders, required). Ignored by ``digits`` and
        ``synthetic``; for ``text``, a UTF-8 file to read instead of Python's help topics.
    download: ``cifar10``/``cifar100`` only: fetch the official archive if the files are missing.
        Nothing is ever downloaded otherwise.
    progress: progress bars for downloads and image decoding (shown only on a terminal).
    options: dataset-specific (see ``docs/data.md``), e.g. ``coarse=True`` for cifar100,
        ``image_size=64`` for imagefolder, ``num_train=`` for synthetic. Every image dataset also
        takes ``classes=[...]`` and ``per_class=N`` (:func:`select_classes`: a subset of the classes,
        relabelled, and at most N training images of each).
    """
    if not isinstance(name, str) or name.lower() not in _MODULES:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    key = name.lower()
    module = importlib.import_module(f"reslab.data.{_MODULES[key]}")
    if key in _WITH_PROGRESS:
        options.setdefault("progress", progress)
    subset = {k: options.pop(k) for k in SUBSET_OPTIONS if k in options}
    if subset and key == "text":
        raise DatasetError(f"dataset 'text' does not take option(s) {', '.join(subset)}: they select image classes")
    if _MODULES[key] == "cifar":
        dataset = module.load(key, data_dir=data_dir, download=download, **options)
    else:
        dataset = module.load(data_dir=data_dir, download=download, **options)
    return select_classes(dataset, **subset) if subset else dataset


__all__ = [
    "AugmentConfig",
    "DATASETS",
    "DeviceLoader",
    "ImageDataset",
    "SequenceLoader",
    "TextDataset",
    "channel_stats",
    "default_data_dir",
    "load_dataset",
    "normalize",
    "select_classes",
]
