"""Class selections and class names that cannot make a classifier, and a text corpus that is a folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reslab.data import load_dataset
from reslab.data.segmentation import load_segfolder
from reslab.errors import DatasetError


def test_a_single_class_selection_is_refused():
    # One class: every label 0, loss 0 and accuracy 100 % whatever the network does.
    with pytest.raises(DatasetError, match=r"classes=\['5'\] keeps 1 class, but a classifier needs at least 2"):
        load_dataset("digits", classes=["5"])
    assert load_dataset("digits", classes=["5", "6"]).num_classes == 2


def test_classes_txt_naming_a_class_twice_is_refused_naming_the_lines(tmp_path):
    root = tmp_path / "seg"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for stem in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(root / "masks" / f"{stem}.png")
    (root / "classes.txt").write_text("bg\nred\n\nred\n")
    with pytest.raises(DatasetError, match=r"classes.txt names class 'red' twice \(lines 2, 4\)"):
        load_segfolder(root, val_fraction=0.5)
    (root / "classes.txt").write_text("bg\nred\n")
    assert load_segfolder(root, val_fraction=0.5).class_names == ["bg", "red"]


def test_text_data_dir_that_is_a_directory_is_refused_as_not_a_file(tmp_path):
    with pytest.raises(DatasetError, match=r"--data-dir '.*' is a directory, expected a text file"):
        load_dataset("text", data_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"file '.*' is a directory, expected a text file"):
        load_dataset("text", file=tmp_path)
    with pytest.raises(DatasetError, match="text file not found"):
        load_dataset("text", data_dir=tmp_path / "missing.txt")
