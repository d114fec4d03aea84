"""``reslab.models.convert.from_keras`` on files that cannot be Keras weights: one CheckpointError each, naming
the file and what is wrong with it (no h5py OSError, no zipfile BadZipFile). Keras is not needed."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from reslab.models.convert import from_keras
from reslab.errors import CheckpointError

h5py = pytest.importorskip("h5py")


def hdf5_bytes() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("layers/conv2d/vars/0", data=np.zeros((32, 32, 3, 8), dtype="float32"))
    return buffer.getvalue()


def keras_archive(path, weights: bytes, config: str = "{}"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", weights)
    return path


@pytest.mark.parametrize("name", ["model.weights.h5", "model.keras"])
def test_an_empty_keras_file_is_refused_as_empty(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{name} is empty \(0 bytes\)"):
        from_keras(tmp_path / name)


@pytest.mark.parametrize("name", ["model.weights.h5", "model.keras"])
def test_a_directory_given_as_keras_file_is_refused_as_a_directory(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(CheckpointError, match=rf"{name} is a directory, not a Keras weights file"):
        from_keras(tmp_path / name)


def test_random_bytes_are_refused_as_not_hdf5_or_not_zip(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (tmp_path / "noise.weights.h5").write_bytes(noise)
    (tmp_path / "noise.keras").write_bytes(noise)
    with pytest.raises(CheckpointError, match=r"noise.weights.h5 is not an HDF5 file"):
        from_keras(tmp_path / "noise.weights.h5")
    with pytest.raises(CheckpointError, match=r"noise.keras is not a zip archive"):
        from_keras(tmp_path / "noise.keras")


def test_truncated_keras_files_are_refused_as_truncated(tmp_path):
    data = hdf5_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.weights.h5 is truncated"):
        from_keras(tmp_path / "cut.weights.h5")
    archive = keras_archive(tmp_path / "whole.keras", data).read_bytes()
    (tmp_path / "cut.keras").write_bytes(archive[: len(archive) // 2])
    with pytest.raises(CheckpointError, match=r"cut.keras is a truncated or damaged zip archive"):
        from_keras(tmp_path / "cut.keras")


def test_damaged_parts_of_a_keras_archive_are_named(tmp_path):
    data = hdf5_bytes()
    keras_archive(tmp_path / "cut_inside.keras", data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut_inside.keras: its model.weights.h5 is truncated"):
        from_keras(tmp_path / "cut_inside.keras")
    keras_archive(tmp_path / "bad_config.keras", data, config="{not json")
    with pytest.raises(CheckpointError, match=r"bad_config.keras: its config.json is not valid JSON"):
        from_keras(tmp_path / "bad_config.keras")
    (tmp_path / "weights_named.keras").write_bytes(data)
    with pytest.raises(CheckpointError, match=r"weights_named.keras is an HDF5 file, not the zip archive"):
        from_keras(tmp_path / "weights_named.keras")
