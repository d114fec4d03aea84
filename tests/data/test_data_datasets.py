"""ImageDataset validation, the registry, digits (embedded) and synthetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reslab.data import DATASETS, ImageDataset, channel_stats, default_data_dir, load_dataset
from reslab.errors import ConfigError, DatasetError


def _ds(**changes):
    fields = dict(train_images=torch.zeros(4, 3, 5, 5, dtype=torch.uint8), train_labels=torch.tensor([0, 1, 2, 0]),
                  test_images=torch.zeros(2, 3, 5, 5, dtype=torch.uint8), test_labels=torch.tensor([1, 2]),
                  class_names=["a", "b", "c"], name="toy", source="test")
    fields.update(changes)
    return ImageDataset(**fields)


def test_image_dataset_properties():
    ds = _ds(train_images=torch.arange(300, dtype=torch.uint8).view(4, 3, 5, 5))
    assert (ds.num_classes, ds.in_chans, ds.image_size, ds.num_train, ds.num_test) == (3, 3, (5, 5), 4, 2)
    assert len(ds.mean) == 3 and all(0 <= m <= 1 for m in ds.mean)
    assert ds.info()["image_size"] == [5, 5] and "4 train / 2 test" in ds.describe()


@pytest.mark.parametrize("changes, pattern", [
    (dict(train_images=torch.zeros(4, 3, 5, 5)), "must be uint8"),
    (dict(train_images=torch.zeros(4, 5, 5, dtype=torch.uint8)), r"shape \(N, C, H, W\)"),
    (dict(train_labels=torch.tensor([0, 1, 3, 0])), r"labels must lie in 0..2 \(3 classes\), found 0..3"),
    (dict(test_labels=torch.tensor([-1, 0])), r"test split: labels must lie in 0..2"),
    (dict(train_labels=torch.tensor([0, 1, 2])), "4 images but 3 labels"),
    (dict(train_labels=torch.tensor([0, 1, 2, 0], dtype=torch.int32)), "int64"),
    (dict(test_images=torch.zeros(2, 3, 6, 5, dtype=torch.uint8)), "differ in"),
    (dict(train_images=torch.zeros(4, 2, 5, 5, dtype=torch.uint8)), "1 .grayscale. or 3"),
    (dict(class_names=[]), "no classes"),
])
def test_image_dataset_rejects_bad_tensors(changes, pattern):
    with pytest.raises(DatasetError, match=pattern):
        _ds(**changes)


def test_non_contiguous_input_is_made_contiguous():
    images = torch.zeros(4, 5, 5, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert _ds(train_images=images).train_images.is_contiguous()


def test_channel_stats_match_float_computation():
    images = torch.randint(0, 256, (50, 3, 7, 9), dtype=torch.uint8)
    mean, std = channel_stats(images)
    as_float = images.double() / 255
    assert np.allclose(mean, as_float.mean(dim=(0, 2, 3)).numpy(), atol=1e-12)
    assert np.allclose(std, as_float.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-12)


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist")
    for name in DATASETS:
        assert name in str(info.value)
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "imagefolder", "synthetic", "text"}


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("RESLAB_DATA")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / "data"


def test_digits_embedded_asset():
    ds = load_dataset("digits")
    assert ds.num_train + ds.num_test == 1797
    assert ds.train_images.shape[1:] == (1, 8, 8) and ds.train_images.dtype == torch.uint8
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert int(ds.train_images.max()) == 255 and int(ds.train_images.min()) == 0
    # Stratified: every class has ~20 % of its images in the test split.
    total = torch.bincount(torch.cat([ds.train_labels, ds.test_labels]), minlength=10)
    test = torch.bincount(ds.test_labels, minlength=10)
    assert ((test - 0.2 * total).abs() <= 0.5).all()
    again = load_dataset("digits")
    assert torch.equal(again.test_images, ds.test_images) and "CC BY 4.0" in ds.source


def test_digits_asset_matches_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    ds = load_dataset("digits")
    images = torch.cat([ds.train_images, ds.test_images])[:, 0].double()
    labels = torch.cat([ds.train_labels, ds.test_labels])
    # The split reorders; compare sorted fingerprints of (label, pixels/255*16).
    ours = sorted(zip(labels.tolist(), (images * 16 / 255).round().flatten(1).tolist()))
    theirs = sorted(zip(bunch.target.tolist(), bunch.images.reshape(1797, -1).tolist()))
    assert ours == theirs


def test_synthetic_options_and_determinism():
    a = load_dataset("synthetic", num_train=20, num_test=7, image_size=6, channels=1, num_classes=4, seed=2)
    b = load_dataset("synthetic", num_train=20, num_test=7, image_size=6, channels=1, num_classes=4, seed=2)
    c = load_dataset("synthetic", num_train=20, num_test=7, image_size=6, channels=1, num_classes=4, seed=3)
    assert a.train_images.shape == (20, 1, 6, 6) and a.test_images.shape == (7, 1, 6, 6)
    assert a.num_classes == 4 and int(a.train_labels.max()) < 4
    assert torch.equal(a.train_images, b.train_images) and not torch.equal(a.train_images, c.train_images)
    assert load_dataset("synthetic", num_train="12").num_train == 12  # command-line strings work


@pytest.mark.parametrize("options, pattern", [
    (dict(channels=2), "channels=2 must be 1 or 3"),
    (dict(num_train=0), "num_train=0 must be an integer >= 1"),
    (dict(image_size=2.5), "image_size=2.5"),
    (dict(size=3), "does not take option.*size"),
])
def test_synthetic_bad_options(options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_dataset("synthetic", **options)


def test_digits_takes_no_options():
    with pytest.raises(ConfigError, match="'digits' does not take option"):
        load_dataset("digits", image_size=32)
