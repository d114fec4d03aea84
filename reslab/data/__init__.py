"""reslab.data: datasets as uint8 tensors + labels + class names, and device-resident batches.

```python
from reslab.data import load_dataset, DeviceLoader, AugmentConfig
ds = load_dataset("cifar10", data_dir="data")            # or "digits" (embedded), "synthetic", ...
loader = DeviceLoader(ds.train_images, ds.train_labels, batch_size=128, device="cuda",
                      augment=AugmentConfig(crop_padding=4, flip=True), mean=ds.mean, std=ds.std)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Each dataset module registers its datasets when it loads; importing them here registers them
# all with the package (the registry itself never imports them). This order is the listing's.
from reslab.data import digits, cifar, imagefolder, synthetic, text, segmentation  # noqa: F401,I001
from reslab.data.augment import AugmentConfig, normalize
from reslab.data.dataset import SUBSET_OPTIONS, ImageDataset, channel_stats, default_data_dir, select_classes
from reslab.data.loader import DeviceLoader
from reslab.data.registry import DatasetEntry, dataset_entry, list_datasets, register_dataset
from reslab.data.text import SequenceLoader, TextDataset
from reslab.errors import DatasetError

#: The datasets :func:`load_dataset` loads (classification and language; segmentation data loads
#: with :func:`reslab.data.segmentation.load_segmentation`).
DATASETS: tuple[str, ...] = tuple(name for name in list_datasets() if dataset_entry(name).task != "segment")


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
    entry = dataset_entry(name)
    if entry is None or entry.task == "segment":
        hint = (f" ({entry.name!r} is segmentation data: reslab.data.segmentation.load_segmentation, or "
                "reslab train unet_resnet20 --data shapes)") if entry is not None else ""
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}{hint}")
    if entry.progress:
        options.setdefault("progress", progress)
    subset = {k: options.pop(k) for k in SUBSET_OPTIONS if k in options}
    if subset and entry.task != "classify":
        raise DatasetError(f"dataset {entry.name!r} does not take option(s) {', '.join(subset)}: they select image "
                           "classes")
    dataset = entry.load(data_dir=data_dir, download=download, **options)
    return select_classes(dataset, **subset) if subset else dataset


__all__ = [
    "AugmentConfig",
    "DATASETS",
    "DatasetEntry",
    "DeviceLoader",
    "ImageDataset",
    "SequenceLoader",
    "TextDataset",
    "channel_stats",
    "dataset_entry",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "normalize",
    "register_dataset",
    "select_classes",
]
