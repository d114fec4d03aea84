"""Segmentation data: the generated shapes set and image + mask folders (each mismatch an error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.data.segmentation import (
    SHAPE_CLASSES,
    load_segfolder,
    load_segmentation,
    make_shapes_segmentation,
    parse_data_name,
)
from reslab.errors import ConfigError, DatasetError


def test_shapes_are_seeded_and_masks_follow_the_drawing():
    images, masks = make_shapes_segmentation(6, image_size=32, seed=3)
    again, again_masks = make_shapes_segmentation(6, image_size=32, seed=3)
    other, _ = make_shapes_segmentation(6, image_size=32, seed=4)
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 32, 32) and masks.shape == (6, 32, 32)
    assert torch.equal(images, again) and torch.equal(masks, again_masks) and not torch.equal(images, other)
    assert int(masks.max()) < len(SHAPE_CLASSES) and (masks == 0).any()
    # A shape is one flat colour (a class: at most 3 shapes, 3 colours); the background is noise.
    for n in range(6):
        for label in masks[n].unique().tolist():
            colours = torch.unique(images[n][:, masks[n] == label], dim=1).shape[1]
            assert colours > 50 if label == 0 else colours <= 3

    many = load_segmentation("shapes", num_train=64, num_test=16, image_size=32, seed=1)
    assert many.num_train == 64 and many.num_test == 16 and many.image_size == (32, 32)
    assert many.class_names == list(SHAPE_CLASSES) and many.in_chans == 3
    assert all(f > 0 for f in many.class_frequencies())  # every class occurs
    assert not torch.equal(many.train_images[:16], many.test_images)  # train and test are different draws
    with pytest.raises(ConfigError, match="does not take option.*colour"):
        load_segmentation("shapes", colour=1)


def _write(folder, stem, size=(16, 12), value=1, mode="L", suffix=".png", image=True, mask=True):
    """An image (W×H ``size``) and its mask: class ``value`` in the left half, background elsewhere."""
    w, h = size
    if image:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        pixels = (np.random.default_rng(len(stem)).random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{stem}{suffix}")
    if mask:
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        values = np.zeros((h, w), dtype=np.uint8)
        values[:, : w // 2] = value
        picture = Image.fromarray(values, mode="L")
        if mode == "P":
            picture = picture.convert("P")
            picture.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
        picture.save(folder / "masks" / f"{stem}.png")


def test_segfolder_held_out_split_and_class_names(tmp_path):
    root = tmp_path / "seg"
    for k in range(5):
        _write(root, f"img{k}", value=1 + k % 2, suffix=".jpg" if k == 0 else ".png", mode="P" if k == 1 else "L")
    ds = load_segmentation(f"segfolder:{root}", val_fraction=0.4)
    assert (ds.num_train, ds.num_test) == (3, 2) and ds.image_size == (12, 16) and ds.in_chans == 3
    assert ds.class_names == ["background", "class_1", "class_2"]  # the largest mask value + 1
    assert ds.train_masks.dtype == torch.uint8 and set(torch.cat([ds.train_masks, ds.test_masks]).unique().tolist()) \
        == {0, 1, 2}
    assert torch.equal(load_segmentation(f"segfolder:{root}", val_fraction=0.4).train_images, ds.train_images)
    (root / "classes.txt").write_text("sky\nroad\ncar\ntree\n")
    named = load_segfolder(root, channels=1, image_size=8)
    assert named.class_names == ["sky", "road", "car", "tree"] and named.train_images.shape[1:] == (1, 8, 8)
    assert named.train_masks.shape[1:] == (8, 8) and set(named.train_masks.unique().tolist()) <= {0, 1, 2}
    assert parse_data_name("segfolder", data_dir=root) == ("segfolder", root)


def test_segfolder_explicit_split(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for k in range(count):
            _write(tmp_path / split, f"{split}{k}")
    ds = load_segmentation("segfolder", data_dir=tmp_path, num_classes=3)
    assert (ds.num_train, ds.num_test, ds.num_classes) == (3, 2, 3) and "train/ and val/" in ds.source


@pytest.mark.parametrize("problem, message", [
    ("no_mask", r"extra\.png has no mask: expected .*masks/extra\.png"),
    ("no_image", r"masks/extra\.png has no image"),
    ("size", r"odd\.png is 16×12 but its mask .*odd\.png is 10×12"),
    ("value", r"masks/img1\.png holds class 7 \(96 pixels\), but there are 3 classes"),
    ("jpeg_mask", r"masks/img1\.jpg: not a mask file.*PNG"),
    ("undecodable", r"img1\.png cannot be decoded"),
    ("rgb_mask", r"masks/img1\.png is a RGB image; a mask holds one class index per pixel"),
    ("stray", r"notes\.txt: not a image file"),
    ("same_stem", r"share the stem 'img1'"),
    ("sizes_differ", r"img2\.png is 20×12, but .*img0\.png is 16×12.*image_size=N"),
    ("empty", r"holds no image files"),
])
def test_segfolder_mismatches_name_the_file(tmp_path, problem, message):
    root = tmp_path / "seg"
    for k in range(3):
        _write(root, f"img{k}")
    options = {}
    if problem == "no_mask":
        _write(root, "extra", mask=False)
    elif problem == "no_image":
        _write(root, "extra", image=False)
    elif problem == "size":
        _write(root, "odd", image=False, size=(10, 12))
        _write(root, "odd", mask=False)
    elif problem == "value":
        _write(root, "img1", value=7)
        options["num_classes"] = 3
    elif problem == "jpeg_mask":
        Image.new("L", (16, 12)).save(root / "masks" / "img1.jpg")
        (root / "masks" / "img1.png").unlink()
    elif problem == "undecodable":
        (root / "images" / "img1.png").write_bytes(b"not a png at all")
    elif problem == "rgb_mask":
        Image.new("RGB", (16, 12)).save(root / "masks" / "img1.png")
    elif problem == "stray":
        (root / "images" / "notes.txt").write_text("hello")
    elif problem == "same_stem":
        _write(root, "img1", suffix=".jpg", mask=False)
    elif problem == "sizes_differ":
        _write(root, "img2", size=(20, 12))
    elif problem == "empty":
        for path in (root / "images").iterdir():
            path.unlink()
    with pytest.raises(DatasetError, match=message):
        load_segmentation(f"segfolder:{root}", **options)


def test_data_names():
    assert parse_data_name("shapes") == ("shapes", None)
    with pytest.raises(DatasetError, match="unknown segmentation data 'digits'"):
        load_segmentation("digits")
    with pytest.raises(DatasetError, match="segfolder needs its directory"):
        load_segmentation("segfolder")
