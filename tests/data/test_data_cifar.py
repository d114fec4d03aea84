"""cifar10 / cifar100 from tiny files in the official python-version layout."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from reslab.data import load_dataset
from reslab.errors import ConfigError, DatasetError


def test_cifar10_loads_pixels_labels_and_names(cifar10_dir, read_cifar_batch):
    ds = load_dataset("cifar10", data_dir=cifar10_dir.parent)
    assert ds.train_images.shape == (30, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (5, 3, 32, 32)
    assert ds.train_labels.dtype == torch.int64 and ds.train_images.is_contiguous()
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10
    first = read_cifar_batch(cifar10_dir / "data_batch_1")
    third = read_cifar_batch(cifar10_dir / "data_batch_3")
    # Row layout: 1024 red, 1024 green, 1024 blue, each 32x32 row-major.
    row = first[b"data"][2]
    assert torch.equal(ds.train_images[2, 1], torch.from_numpy(row[1024:2048].reshape(32, 32)))
    assert torch.equal(ds.train_images[12], torch.from_numpy(third[b"data"][0].reshape(3, 32, 32)))
    assert ds.train_labels[:6].tolist() == first[b"labels"]
    assert ds.source == str(cifar10_dir.resolve())
    expected_mean = ds.train_images.double().mean(dim=(0, 2, 3)) / 255
    assert np.allclose(ds.mean, expected_mean.numpy(), atol=1e-9)


def test_cifar10_accepts_batches_dir_itself_and_str_keys(tmp_path, make_cifar10):
    directory = make_cifar10(tmp_path / "x", str_keys=True)
    ds = load_dataset("cifar10", data_dir=directory)
    assert ds.num_train == 30 and ds.class_names[-1] == "truck"


def test_cifar_dir_from_environment_then_cwd(tmp_path, make_cifar10, monkeypatch):
    make_cifar10(tmp_path / "envdata")
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path / "envdata"))
    assert load_dataset("cifar10").num_train == 30
    monkeypatch.delenv("RESLAB_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"no cifar-10-batches-py/ directory in .*data"):
        load_dataset("cifar10")
    make_cifar10(tmp_path / "data", per_batch=2)
    assert load_dataset("cifar10").num_train == 10


def test_cifar100_fine_and_coarse(cifar100_dir, read_cifar_batch):
    fine = load_dataset("cifar100", data_dir=cifar100_dir.parent)
    coarse = load_dataset("cifar100", data_dir=cifar100_dir.parent, coarse=True)
    raw = read_cifar_batch(cifar100_dir / "train")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.train_labels.tolist() == raw[b"fine_labels"]
    assert coarse.train_labels.tolist() == raw[b"coarse_labels"]
    assert coarse.class_names[3] == "coarse3" and coarse.options == {"coarse": True}
    assert torch.equal(fine.test_images, coarse.test_images)


def test_cifar10_rejects_cifar100_only_option(cifar10_dir):
    with pytest.raises(ConfigError, match="coarse"):
        load_dataset("cifar10", data_dir=cifar10_dir, coarse=True)


def test_missing_directory_names_expected_files_and_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(info.value)
    for needed in ("cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch", "batches.meta",
                   "--download", "cifar-10-python.tar.gz"):
        assert needed in message
    with pytest.raises(DatasetError, match=r"cifar-100-python/ with train, test, meta"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_partial_directory_names_the_missing_files(cifar10_dir):
    (cifar10_dir / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"lacks data_batch_4\b"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_truncated_pickle_names_the_file(cifar10_dir):
    path = cifar10_dir / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match=r"data_batch_2 is truncated or corrupt"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_garbage_file_is_a_dataset_error(cifar10_dir):
    (cifar10_dir / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="test_batch"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_pickle_that_would_run_code_is_refused(cifar10_dir):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (cifar10_dir / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1 is not a CIFAR file: refusing to load the global .*print"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def _rewrite(path, read, **changes):
    batch = read(path)
    batch.update({k.encode(): v for k, v in changes.items()})
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("data, pattern", [
    (np.zeros((6, 3000), dtype=np.uint8), r"shape \(6, 3000\), expected \(N, 3072\)"),
    (np.zeros((6, 3072), dtype=np.float32), r"dtype float32, expected uint8"),
    (np.zeros((6, 3, 32, 32), dtype=np.uint8), r"shape \(6, 3, 32, 32\), expected \(N, 3072\)"),
    ([[0] * 3072] * 6, r"a list, expected a numpy uint8 array"),
])
def test_wrong_shapes_and_dtypes(cifar10_dir, read_cifar_batch, data, pattern):
    _rewrite(cifar10_dir / "data_batch_3", read_cifar_batch, data=data)
    with pytest.raises(DatasetError, match=r"data_batch_3: 'data' (has|is) " + pattern):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_labels_out_of_range(cifar10_dir, read_cifar_batch):
    _rewrite(cifar10_dir / "data_batch_5", read_cifar_batch, labels=[0, 1, 2, 3, 4, 10])
    with pytest.raises(DatasetError, match=r"data_batch_5: labels must lie in 0..9, found 0..10"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_label_count_mismatch(cifar10_dir, read_cifar_batch):
    _rewrite(cifar10_dir / "test_batch", read_cifar_batch, labels=[1, 2])
    with pytest.raises(DatasetError, match=r"test_batch: 5 images but 'labels' has shape \(2,\)"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_missing_key(cifar10_dir, read_cifar_batch):
    batch = read_cifar_batch(cifar10_dir / "data_batch_1")
    del batch[b"labels"]
    (cifar10_dir / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1 has no 'labels' entry"):
        load_dataset("cifar10", data_dir=cifar10_dir.parent)


def test_predict_fast_finds_a_moved_dataset_with_data_dir(tmp_path, make_cifar10, capsys):
    # An int8 fast path calibrates on the run's training images: after the data moved, the run's
    # recorded data_dir fails with the loader's message and --data-dir points at the new copy.
    import json
    import shutil

    from PIL import Image

    from reslab.cli.main import main
    from reslab.train import resolve_config, train

    old = make_cifar10(tmp_path / "old", per_batch=8)
    config = resolve_config("digits-quick", model="cifar_resnet8", data="cifar10",
                            overrides={"data_dir": str(old.parent), "epochs": 1, "batch_size": 8, "quiet": True,
                                       "device": "cpu", "out": str(tmp_path / "run")})
    run_dir = train(config).run_dir
    from reslab.applications.inference import weights_fingerprint
    from reslab.train import load_run

    fingerprint = weights_fingerprint(load_run(run_dir).model)  # a record of these very weights
    (run_dir / "inference.json").write_text(json.dumps(
        {"fastest": "int8-ort", "batch": 16, "checkpoint": "last", "weights_fingerprint": fingerprint,
         "results": [{"name": "int8-ort", "throughput": 1.0, "agreement": 1.0, "passed": True}]}))
    new = tmp_path / "new"
    shutil.move(str(old.parent), str(new))
    Image.new("RGB", (32, 32), (120, 40, 200)).save(tmp_path / "x.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(tmp_path / "x.png"), "--fast"])
    assert exit_info.value.code != 0 and "CIFAR-10 not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(tmp_path / "x.png"), "--fast", "--json", "--data-dir", str(new)])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and "fast path: int8-ort" in captured.err
    assert len(json.loads(captured.out)["top"]) == 5
