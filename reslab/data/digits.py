"""``digits``: scikit-learn's 1,797 handwritten 8x8 digits, shipped inside the package.

The pixels come from the UCI "Optical Recognition of Handwritten Digits" data set (CC BY 4.0),
as distributed by scikit-learn. ``scripts/make_digits_asset.py`` turned them once into
``assets/digits.npz`` (values 0..16 scaled to uint8 0..255) together with a fixed stratified
split (20 % of each class for test, seed 0), so the split never changes and scikit-learn is not
needed at run time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data._options import check_options
from reslab.data.dataset import ImageDataset
from reslab.data.registry import register_dataset
from reslab.errors import DatasetError

ASSET = Path(__file__).resolve().parent / "assets" / "digits.npz"
CLASS_NAMES = [str(d) for d in range(10)]
SOURCE = "embedded (scikit-learn digits, UCI optical recognition of handwritten digits, CC BY 4.0)"


def load(data_dir: str | Path | None = None, download: bool = False, **options: Any) -> ImageDataset:
    """Load the embedded digits: 1,438 train / 359 test images, uint8 (N, 1, 8, 8), 10 classes.

    ``data_dir`` and ``download`` are accepted for a uniform signature and ignored.
    """
    check_options("digits", options, {})
    try:
        with np.load(ASSET, allow_pickle=False) as archive:
            images = archive["images"]
            labels = archive["labels"]
            is_test = archive["is_test"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"the embedded digits asset {ASSET} is missing or corrupt ({exc}); "
                           "reinstall reslab or rebuild it with scripts/make_digits_asset.py") from exc
    images_t = torch.from_numpy(np.ascontiguousarray(images))
    labels_t = torch.from_numpy(labels.astype(np.int64))
    test = torch.from_numpy(is_test.astype(bool))
    return ImageDataset(
        train_images=images_t[~test].contiguous(),
        train_labels=labels_t[~test].contiguous(),
        test_images=images_t[test].contiguous(),
        test_labels=labels_t[test].contiguous(),
        class_names=CLASS_NAMES,
        name="digits",
        source=SOURCE,
    )


register_dataset("digits", load, description="8×8 handwritten digits, embedded", directory="none")
