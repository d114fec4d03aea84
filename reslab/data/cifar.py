"""``cifar10`` / ``cifar100`` from the official "python version" layout.

CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
``batches.meta``. CIFAR-100: ``cifar-100-python/`` with ``train``, ``test`` and ``meta`` (fine
labels by default; ``coarse=True`` for the 20 superclasses). Each file is a pickle of a dict
with ``data`` (uint8 (N, 3072): 1024 red, 1024 green, 1024 blue values per 32x32 image,
row-major) and ``labels`` / ``fine_labels`` / ``coarse_labels``. Keys may be bytes (Python-2
pickles read with ``encoding="bytes"``) or str. Optional keys (``filenames``,
``batch_label``) are not needed, and no md5 of the batch files is checked when loading, so
faithful rebuilds of the files load too.

The pickles are read with a restricted unpickler that only builds numpy arrays and plain
containers, so a crafted file cannot run code.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data._options import check_options
from reslab.data.dataset import ImageDataset, default_data_dir
from reslab.data.download import download_and_extract
from reslab.data.registry import register_dataset
from reslab.errors import DatasetError


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    dir_name: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    url: str
    md5: str
    official_counts: tuple[int, int]


SPECS = {
    "cifar10": CifarSpec("cifar10", "CIFAR-10", "cifar-10-batches-py",
                         tuple(f"data_batch_{k}" for k in range(1, 6)), "test_batch", "batches.meta",
                         "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "c58f30108f718f92721af3b95e74349a", (50000, 10000)),
    "cifar100": CifarSpec("cifar100", "CIFAR-100", "cifar-100-python", ("train",), "test", "meta",
                          "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          "eb9058c3a382ffc7106e4002c42a8d85", (50000, 10000)),
}

OPTIONS = {
    "coarse": "cifar100 only: the 20 coarse labels instead of the 100 fine ones",
    "url": "archive URL used by --download (default: the official one)",
    "md5": "expected md5 of the archive (default: the official one)",
    "progress": "show a download progress bar when on a terminal (default true)",
}

_PIXELS = 32 * 32 * 3

# The only globals a CIFAR pickle needs: numpy's array reconstruction (both module spellings,
# numpy < 2 wrote ``numpy.core``), and the helper Python 3 uses for bytes in protocol 2.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}
if int(np.__version__.split(".")[0]) < 2:  # pragma: no cover - numpy 1.x has no numpy._core
    _ALLOWED_GLOBALS = {k: (v[0].replace("numpy._core", "numpy.core"), v[1]) for k, v in _ALLOWED_GLOBALS.items()}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise _ForbiddenGlobal(f"refusing to load the global {module}.{name}")
        return super().find_class(*target)


def _read_pickle(path: Path) -> dict:
    """Unpickle one CIFAR file into a dict with str keys; corrupt files raise :class:`DatasetError`."""
    try:
        with open(path, "rb") as handle:
            obj = _RestrictedUnpickler(handle, encoding="bytes").load()
    except FileNotFoundError as exc:
        raise DatasetError(f"{path} is missing") from exc
    except MemoryError:
        raise
    except _ForbiddenGlobal as exc:
        raise DatasetError(f"{path} is not a CIFAR file: {exc} (a CIFAR pickle holds only numpy arrays, lists "
                           "and dicts; loading it could run arbitrary code)") from exc
    except Exception as exc:  # pickle raises many types on bad bytes (EOFError, ValueError, KeyError, ...)
        raise DatasetError(f"{path} is truncated or corrupt and cannot be read ({type(exc).__name__}: {exc}); "
                           "delete the directory and download it again (--download)") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} holds a {type(obj).__name__}, expected a dict with 'data' and labels")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _field(batch: dict, key: str, path: Path) -> Any:
    if key not in batch:
        raise DatasetError(f"{path} has no {key!r} entry (found {sorted(batch)}); it is not a CIFAR file "
                           "of the python-version layout")
    return batch[key]


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 3, 32, 32), labels int64 (N,), validated."""
    batch = _read_pickle(path)
    data = _field(batch, "data", path)
    if not isinstance(data, np.ndarray):
        raise DatasetError(f"{path}: 'data' is a {type(data).__name__}, expected a numpy uint8 array (N, 3072)")
    if data.dtype != np.uint8:
        raise DatasetError(f"{path}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DatasetError(f"{path}: 'data' has shape {data.shape}, expected (N, {_PIXELS}) "
                           "(32x32 RGB images, one per row)")
    raw_labels = _field(batch, label_key, path)
    try:
        labels = np.asarray(raw_labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: {label_key!r} must be a list of integers") from exc
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{path}: {data.shape[0]} images but {label_key!r} has shape {labels.shape}; "
                           "expected one label per image")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def _class_names(path: Path, key: str) -> list[str]:
    meta = _read_pickle(path)
    names = _field(meta, key, path)
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"{path}: {key!r} must be a non-empty list of class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def expected_files(spec: CifarSpec) -> list[str]:
    return [*spec.train_files, spec.test_file, spec.meta_file]


def find_dir(spec: CifarSpec, data_dir: str | Path | None) -> tuple[Path, Path]:
    """(batches directory if found else the place it is expected, parent directory).

    ``data_dir`` may be the parent (holding ``cifar-10-batches-py/``) or the batches directory
    itself; without it ``$RESLAB_DATA``, then ``./data``, is the parent.
    """
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    nested = base / spec.dir_name
    if nested.is_dir():
        return nested, base
    if base.is_dir() and (base.name == spec.dir_name or (base / spec.meta_file).is_file()):
        return base, base.parent
    return nested, base


def _missing_message(spec: CifarSpec, directory: Path, parent: Path, missing: list[str]) -> str:
    files = ", ".join(expected_files(spec))
    where = (f"{directory} lacks {', '.join(missing)}" if directory.is_dir()
             else f"no {spec.dir_name}/ directory in {parent}")
    return (f"{spec.title} not found: {where}. Expected {spec.dir_name}/ with {files}. "
            f"Get it with --download (load_dataset(..., download=True)), or download {spec.url} by hand and "
            f"extract it into {parent}; point elsewhere with --data-dir or $RESLAB_DATA")


def load(name: str, data_dir: str | Path | None = None, download: bool = False, **options: Any) -> ImageDataset:
    """Load CIFAR-10 or CIFAR-100 as uint8 (N, 3, 32, 32) tensors (50,000 train / 10,000 test officially)."""
    spec = SPECS[name]
    allowed = dict(OPTIONS)
    if name != "cifar100":
        allowed.pop("coarse")
    check_options(name, options, allowed)
    coarse = bool(options.get("coarse", False))
    directory, parent = find_dir(spec, data_dir)
    missing = [f for f in expected_files(spec) if not (directory / f).is_file()]
    if missing and download:
        directory = download_and_extract(options.get("url", spec.url), parent, spec.dir_name,
                                         options.get("md5", spec.md5), progress=options.get("progress", True))
        missing = [f for f in expected_files(spec) if not (directory / f).is_file()]
    if missing:
        raise DatasetError(_missing_message(spec, directory, parent, missing))

    if name == "cifar100":
        label_key = "coarse_labels" if coarse else "fine_labels"
        class_names = _class_names(directory / spec.meta_file,
                                   "coarse_label_names" if coarse else "fine_label_names")
    else:
        label_key = "labels"
        class_names = _class_names(directory / spec.meta_file, "label_names")
    num_classes = len(class_names)

    train = [_read_batch(directory / f, label_key, num_classes) for f in spec.train_files]
    test_images, test_labels = _read_batch(directory / spec.test_file, label_key, num_classes)
    train_images = train[0][0] if len(train) == 1 else np.concatenate([t[0] for t in train])
    train_labels = train[0][1] if len(train) == 1 else np.concatenate([t[1] for t in train])
    return ImageDataset(
        train_images=torch.from_numpy(np.ascontiguousarray(train_images)),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(np.ascontiguousarray(test_images)),
        test_labels=torch.from_numpy(test_labels),
        class_names=class_names,
        name=name,
        source=str(directory.resolve()),
        options={"coarse": True} if coarse else {},
    )


for _spec in SPECS.values():
    register_dataset(_spec.name, functools.partial(load, _spec.name), description=f"{_spec.title}, from its official batches",
                     progress=True)
