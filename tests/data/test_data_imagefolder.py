"""imagefolder: tiny PNG/JPEG folders built with Pillow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data import load_dataset
from reslab.data.imagefolder import StreamingImageFolder
from reslab.errors import ConfigError, DatasetError


def _folder(root: Path, make_image, classes=("cat", "dog", "eel"), per_class=5, gray=False, size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        for k in range(per_class):
            shape = size if gray else (*size, 3)
            suffix = ".jpg" if k % 2 else ".png"
            make_image(root / name / f"{k:03d}{suffix}", rng.integers(0, 256, shape, dtype=np.uint8))
    return root


def test_split_folder_stratified_seeded_and_sized(tmp_path, make_image):
    root = _folder(tmp_path / "imgs", make_image, per_class=10)
    ds = load_dataset("imagefolder", data_dir=root, image_size=8, cache=False)
    assert ds.class_names == ["cat", "dog", "eel"] and ds.in_chans == 3 and ds.image_size == (8, 8)
    assert ds.train_images.shape == (24, 3, 8, 8) and ds.test_images.shape == (6, 3, 8, 8)
    assert torch.bincount(ds.test_labels).tolist() == [2, 2, 2]  # 20 % of each class
    again = load_dataset("imagefolder", data_dir=root, image_size=8, cache=False)
    other = load_dataset("imagefolder", data_dir=root, image_size=8, cache=False, seed=1)
    assert torch.equal(again.test_images, ds.test_images)
    assert not torch.equal(other.test_images, ds.test_images)
    rect = load_dataset("imagefolder", data_dir=root, image_size=(6, 9), cache=False, val_fraction=0.5)
    assert rect.train_images.shape == (15, 3, 6, 9)


def test_png_pixels_are_kept_exactly_at_native_size(tmp_path, make_image):
    pixels = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    make_image(tmp_path / "r" / "only" / "a.png", pixels)
    ds = load_dataset("imagefolder", data_dir=tmp_path / "r", image_size=8, cache=False)
    assert torch.equal(ds.train_images[0], torch.from_numpy(pixels).permute(2, 0, 1))


def test_grayscale_folder_gives_one_channel_unless_asked(tmp_path, make_image):
    root = _folder(tmp_path / "g", make_image, gray=True)
    assert load_dataset("imagefolder", data_dir=root, cache=False).in_chans == 1
    rgb = load_dataset("imagefolder", data_dir=root, cache=False, channels=3)
    assert rgb.in_chans == 3 and torch.equal(rgb.train_images[:, 0], rgb.train_images[:, 2])
    make_image(root / "cat" / "colour.png", np.zeros((4, 4, 3), dtype=np.uint8))
    assert load_dataset("imagefolder", data_dir=root, cache=False).in_chans == 3


def test_explicit_train_and_val_folders(tmp_path, make_image):
    _folder(tmp_path / "d" / "train", make_image, per_class=4)
    _folder(tmp_path / "d" / "val", make_image, per_class=2, seed=1)
    ds = load_dataset("imagefolder", data_dir=tmp_path / "d", cache=False)
    assert ds.num_train == 12 and ds.num_test == 6 and ds.class_names == ["cat", "dog", "eel"]


def test_mismatched_class_sets(tmp_path, make_image):
    _folder(tmp_path / "d" / "train", make_image, classes=("cat", "dog"), per_class=2)
    _folder(tmp_path / "d" / "val", make_image, classes=("cat", "eel"), per_class=1)
    with pytest.raises(DatasetError, match=r"only in train: \['dog'\]; only in val: \['eel'\]"):
        load_dataset("imagefolder", data_dir=tmp_path / "d", cache=False)


def test_cache_reused_then_invalidated(tmp_path, make_image, monkeypatch):
    root = _folder(tmp_path / "c", make_image)
    first = load_dataset("imagefolder", data_dir=root, image_size=8)
    cache_files = list((root / ".reslab-cache").iterdir())
    assert len(cache_files) == 1

    import reslab.data.imagefolder as imagefolder
    calls = []
    original = imagefolder.decode_image
    monkeypatch.setattr(imagefolder, "decode_image", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    cached = load_dataset("imagefolder", data_dir=root, image_size=8)
    assert calls == [] and torch.equal(cached.train_images, first.train_images)
    assert cached.class_names == first.class_names

    # Rewriting one file (new size and mtime) rebuilds.
    target = root / "dog" / "002.png"
    make_image(target, np.zeros((30, 30, 3), dtype=np.uint8))
    os.utime(target, ns=(1, 1))
    rebuilt = load_dataset("imagefolder", data_dir=root, image_size=8)
    assert len(calls) == 15 and not torch.equal(rebuilt.train_images, first.train_images)
    # An added file rebuilds too; other options get their own fingerprint.
    calls.clear()
    make_image(root / "eel" / "new.png", np.zeros((5, 5, 3), dtype=np.uint8))
    grown = load_dataset("imagefolder", data_dir=root, image_size=8)
    assert grown.num_train + grown.num_test == 16
    assert len(calls) == 16
    calls.clear()
    load_dataset("imagefolder", data_dir=root, image_size=8, seed=3)
    assert len(calls) == 16


def test_cache_at_given_path_and_corrupt_cache_rebuilt(tmp_path, make_image):
    root = _folder(tmp_path / "c", make_image)
    cache = tmp_path / "run" / "images.pt"
    ds = load_dataset("imagefolder", data_dir=root, cache=str(cache))
    assert cache.is_file() and not (root / ".reslab-cache").exists()
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable image cache"):
        again = load_dataset("imagefolder", data_dir=root, cache=cache)
    assert torch.equal(again.train_images, ds.train_images)


def test_empty_class_folder(tmp_path, make_image):
    root = _folder(tmp_path / "e", make_image)
    (root / "fox").mkdir()
    (root / "fox" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"class folder .*fox holds no images"):
        load_dataset("imagefolder", data_dir=root)


def test_no_classes_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders in"):
        load_dataset("imagefolder", data_dir=tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("imagefolder", data_dir=tmp_path / "nope")
    with pytest.raises(DatasetError, match="needs --data-dir"):
        load_dataset("imagefolder")


def test_unreadable_image_is_named(tmp_path, make_image):
    root = _folder(tmp_path / "u", make_image)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=r"cannot read image .*dog/broken.png"):
        load_dataset("imagefolder", data_dir=root, channels=3, cache=False)
    with pytest.raises(DatasetError, match=r"cannot read image .*dog/broken.png"):
        load_dataset("imagefolder", data_dir=root, cache=False)  # channel auto-detection reads headers


def test_truncated_jpeg_is_named(tmp_path, make_image):
    root = _folder(tmp_path / "t", make_image, size=(64, 64))
    path = root / "cat" / "001.jpg"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"cannot read image .*cat/001.jpg"):
        load_dataset("imagefolder", data_dir=root, channels=3, cache=False)


def test_bad_options(tmp_path, make_image):
    root = _folder(tmp_path / "o", make_image)
    with pytest.raises(ConfigError, match="channels=2 must be 1 or 3"):
        load_dataset("imagefolder", data_dir=root, channels=2)
    with pytest.raises(ConfigError, match=r"val_fraction=1.5"):
        load_dataset("imagefolder", data_dir=root, val_fraction=1.5)
    with pytest.raises(ConfigError, match="does not take option"):
        load_dataset("imagefolder", data_dir=root, colour=True)


def test_streaming_folder_matches_in_memory_split(tmp_path, make_image):
    root = _folder(tmp_path / "s", make_image)
    ds = load_dataset("imagefolder", data_dir=root, image_size=8, cache=False, channels=3)
    stream = StreamingImageFolder(root, "val", image_size=8, channels=3)
    loader = torch.utils.data.DataLoader(stream, batch_size=4)
    images = torch.cat([x for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    assert torch.equal(images, ds.test_images) and torch.equal(labels, ds.test_labels)
    assert stream.class_names == ds.class_names
