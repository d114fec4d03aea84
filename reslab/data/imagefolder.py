"""``imagefolder``: your own images, one sub-folder per class (PNG or JPEG).

Layouts::

    ROOT/cat/001.png, ROOT/dog/xyz.jpg, ...                 -> seeded stratified train/val split
    ROOT/train/cat/..., ROOT/val/cat/...  (or ROOT/test/)   -> the given split

Every image is decoded once with Pillow, converted to RGB (``channels=3``) or grayscale
(``channels=1``; by default 1 only when every image is grayscale), resized to ``image_size``
(bilinear, aspect ratio not kept) and stored as uint8 tensors. The result is cached with
``torch.save`` (loaded back with ``weights_only=True``) together with a fingerprint of the file
list, sizes and modification times and of the options; a changed, added or removed file, or
other options, rebuild the cache. The default cache lives in ``ROOT/.reslab-cache/``; pass
``cache=PATH`` to put it elsewhere (e.g. a run directory) or ``cache=False`` to skip it.

Folders too large for memory: use :class:`StreamingImageFolder` with a ``torch.utils.data.
DataLoader`` (decoding in worker processes) and augment each uint8 batch on the device with
:func:`reslab.data.augment.augment_batch` (see docs/data.md).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from reslab.data._options import check_options, float_option, int_option
from reslab.data.dataset import ImageDataset
from reslab.data.registry import register_dataset
from reslab.errors import ConfigError, DatasetError
from reslab.utils import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_DIR = ".reslab-cache"
_CACHE_VERSION = 2  # 2: alpha composited over black (decode_image)
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")

OPTIONS = {
    "image_size": "side (or (H, W)) images are resized to, default 32",
    "channels": "1 (grayscale) or 3 (RGB); default 1 only if every image is grayscale",
    "val_fraction": "share of each class held out when there are no train/ and val/ folders, default 0.2",
    "seed": "seed of that split, default 0",
    "cache": "cache file path, True for ROOT/.reslab-cache/ (default), False for none",
    "progress": "progress bar while decoding (default true, only on a terminal)",
}


@dataclass
class FolderIndex:
    """The files of an image folder: sorted class names and, per split, (path, label) lists."""

    root: Path
    class_names: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    explicit_split: bool


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _scan_classes(folder: Path) -> dict[str, list[Path]]:
    classes = _class_dirs(folder)
    if not classes:
        raise DatasetError(f"no class folders in {folder}: expected one sub-folder per class holding "
                           f"{'/'.join(s.lstrip('.').upper() for s in IMAGE_SUFFIXES)} files "
                           "(or train/ and val/ folders that each hold class folders)")
    found = {}
    for class_dir in classes:
        files = _images_in(class_dir)
        if not files:
            raise DatasetError(f"class folder {class_dir} holds no images (looked for "
                               f"{', '.join(IMAGE_SUFFIXES)} files); add images or remove the folder")
        found[class_dir.name] = files
    return found


def _stratified_split(per_class: list[list[Path]], val_fraction: float, seed: int
                      ) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Per class, hold out round(val_fraction * n) files (keeping >= 1 for training), seeded."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, files in enumerate(per_class):
        order = rng.permutation(len(files))
        n_val = min(int(round(val_fraction * len(files))), len(files) - 1)
        held = set(order[:n_val].tolist())
        for k, path in enumerate(files):
            (val if k in held else train).append((path, label))
    return train, val


def index_folder(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> FolderIndex:
    """Scan ``root`` (either layout) into a :class:`FolderIndex`; no image is decoded."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory; pass --data-dir pointing "
                           "at a folder with one sub-folder of PNG/JPEG images per class")
    second = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and second is not None:
        train_classes = _scan_classes(root / "train")
        val_classes = _scan_classes(second)
        if set(train_classes) != set(val_classes):
            only_train = sorted(set(train_classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(train_classes))
            raise DatasetError(f"class folders of {root / 'train'} and {second} differ: only in train: "
                               f"{only_train or 'none'}; only in {second.name}: {only_val or 'none'}. Both must "
                               "hold the same classes")
        names = sorted(train_classes)
        train = [(p, k) for k, n in enumerate(names) for p in train_classes[n]]
        test = [(p, k) for k, n in enumerate(names) for p in val_classes[n]]
        return FolderIndex(root, names, train, test, explicit_split=True)
    classes = _scan_classes(root)
    names = sorted(classes)
    train, test = _stratified_split([classes[n] for n in names], val_fraction, seed)
    return FolderIndex(root, names, train, test, explicit_split=False)


def _fingerprint(index: FolderIndex, settings: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(repr(sorted(settings.items())).encode())
    for split, items in (("train", index.train), ("test", index.test)):
        for path, label in items:
            stat = path.stat()
            rel = path.relative_to(index.root).as_posix()
            digest.update(f"{split}\0{rel}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _to_uint8(image: Any, notes: list[str] | None = None) -> Any:
    """16-bit and float grayscale images -> 8-bit 'L' (PIL's own convert would clip, not scale)."""
    from PIL import Image  # noqa: PLC0415 - lazy: only image files need Pillow

    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and array.max(initial=0) > 255):
            array = array / 257.0
            if notes is not None:
                notes.append("16-bit scaled to 8-bit (÷257)")
        return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    return image


def _without_alpha(image: Any, notes: list[str] | None = None) -> Any:
    """An image with transparency composited over black: a pixel's alpha is how much of it is there.

    The one rule for training and prediction alike (PIL's plain ``convert`` would drop the alpha
    channel, so a fully transparent pixel would count with its hidden colour).
    """
    from PIL import Image  # noqa: PLC0415 - lazy: only image files need Pillow

    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image
    gray = image.mode in ("LA", "La")
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("L" if gray else "RGB")
    if notes is not None:
        notes.append("transparency composited over black")
    return flat


def decode_image(path: Path, size: tuple[int, int], channels: int | None,
                 notes: list[str] | None = None) -> np.ndarray:
    """Decode ``path`` -> uint8 (C, H, W); C = ``channels``, or the image's own (1 gray, 3 colour) if None.

    The one image reader of reslab (image folders and ``reslab predict``): 16-bit images are
    scaled to 8 bits, transparency is composited over black, colour is converted to ``channels``
    and the image resized (bilinear) to ``size`` = (H, W). ``notes`` collects what was done.
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - lazy: only image files need Pillow

    try:
        with Image.open(path) as image:
            image.load()
            image = _without_alpha(_to_uint8(image, notes), notes)
            own = 1 if image.mode in _GRAY_MODES else 3
            channels = own if channels is None else channels
            if channels != own and notes is not None:
                notes.append("colour converted to grayscale" if channels == 1 else "grayscale repeated to RGB")
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (size[1], size[0]):
                if notes is not None:
                    notes.append(f"resized {image.size[0]}×{image.size[1]} → {size[1]}×{size[0]}")
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.array(image, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: it cannot be read as PNG/JPEG ({type(exc).__name__}: {exc}); "
                           "fix or remove the file") from exc
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def is_grayscale(path: Path) -> bool:
    """Whether ``path``'s header says grayscale (reads the header only)."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - lazy: only image files need Pillow

    try:
        with Image.open(path) as image:
            return image.mode in _GRAY_MODES
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path} ({type(exc).__name__}: {exc}); fix or remove the file") from exc


def _decode_all(items: Sequence[tuple[Path, int]], size: tuple[int, int], channels: int, progress: bool,
                desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.empty((len(items), channels, size[0], size[1]), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    for k, (path, label) in enumerate(tqdm(items, desc=desc, unit="img", leave=False,
                                           disable=(None if progress else True))):
        images[k] = decode_image(path, size, channels)
        labels[k] = label
    return torch.from_numpy(images), torch.from_numpy(labels)


def _parse_size(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"dataset 'imagefolder': option image_size={value!r} must be one int or (H, W)")
        return (int_option("imagefolder", "image_size", value[0], 1), int_option("imagefolder", "image_size", value[1], 1))
    side = int_option("imagefolder", "image_size", value, 1)
    return side, side


def _resolve_channels(value: Any, index: FolderIndex) -> int:
    if value is None:
        every = [p for p, _ in index.train] + [p for p, _ in index.test]
        return 1 if all(is_grayscale(p) for p in every) else 3
    channels = int_option("imagefolder", "channels", value, 1)
    if channels not in (1, 3):
        raise ConfigError(f"dataset 'imagefolder': option channels={value!r} must be 1 or 3")
    return channels


def _cache_path(root: Path, cache: Any, size: tuple[int, int], channels: int | None) -> Path | None:
    """``cache`` option -> file (None: no cache). True/None: ``ROOT/.reslab-cache/...``; False: none."""
    if isinstance(cache, str) and cache.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        cache = cache.strip().lower() in ("true", "yes", "on", "1")
    if cache is False:
        return None
    if cache is True or cache is None:
        tag = "auto" if channels is None else str(channels)
        return root / CACHE_DIR / f"imagefolder_{size[0]}x{size[1]}_c{tag}.pt"
    return Path(cache).expanduser()


def _read_cache(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable image cache {path} ({type(exc).__name__}); rebuilding it", stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("version") != _CACHE_VERSION \
            or payload.get("fingerprint") != fingerprint:
        return None
    return payload


def load(data_dir: str | Path | None = None, download: bool = False, **options: Any) -> ImageDataset:
    """Load an image folder (see the module docstring) as uint8 (N, C, H, W) tensors.

    ``download`` is not supported (there is nothing official to fetch).
    """
    check_options("imagefolder", options, OPTIONS)
    if data_dir is None:
        raise DatasetError("dataset 'imagefolder' needs --data-dir (data_dir=): a folder with one sub-folder of "
                           "PNG/JPEG images per class, or train/ and val/ folders of class folders")
    if download:
        raise DatasetError("dataset 'imagefolder' cannot be downloaded; point --data-dir at your own folder")
    size = _parse_size(options.get("image_size", 32))
    val_fraction = float_option("imagefolder", "val_fraction", options.get("val_fraction", 0.2), 0.0, 1.0)
    seed = int_option("imagefolder", "seed", options.get("seed", 0), 0)
    progress = bool(options.get("progress", True))
    requested_channels = options.get("channels")
    index = index_folder(data_dir, val_fraction, seed)
    root = index.root

    settings = {"image_size": size, "channels": requested_channels, "val_fraction": val_fraction,
                "seed": seed, "explicit_split": index.explicit_split}
    fingerprint = _fingerprint(index, settings)
    cache_file = _cache_path(root, options.get("cache", True), size, requested_channels)
    payload = _read_cache(cache_file, fingerprint) if cache_file is not None else None
    if payload is None:
        channels = _resolve_channels(requested_channels, index)
        train_images, train_labels = _decode_all(index.train, size, channels, progress, "decoding train images")
        test_images, test_labels = _decode_all(index.test, size, channels, progress, "decoding val images")
        payload = {
            "version": _CACHE_VERSION,
            "fingerprint": fingerprint,
            "class_names": list(index.class_names),
            "train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels,
        }
        if cache_file is not None:
            try:
                with atomic_path(cache_file) as tmp:
                    torch.save(payload, tmp)
            except OSError as exc:  # read-only data folders still load, just without a cache
                warnings.warn(f"could not write the image cache {cache_file} ({exc}); pass cache=PATH to put it "
                              "somewhere writable", stacklevel=2)
    out_options = {"image_size": list(size), "val_fraction": val_fraction, "seed": seed}
    if requested_channels is not None:
        out_options["channels"] = int(requested_channels)
    return ImageDataset(
        train_images=payload["train_images"].contiguous(),
        train_labels=payload["train_labels"],
        test_images=payload["test_images"].contiguous(),
        test_labels=payload["test_labels"],
        class_names=payload["class_names"],
        name="imagefolder",
        source=str(root.resolve()),
        options=out_options,
    )


class StreamingImageFolder(torch.utils.data.Dataset):
    """An image folder read file by file, for folders too large to hold in memory.

    Same layouts, class order and seeded split as ``load_dataset("imagefolder")``. Item ``i``
    is ``(image uint8 (C, H, W), label int)``; batch it with a ``torch.utils.data.DataLoader``
    (``num_workers`` > 0 decodes in parallel, ``pin_memory=True`` speeds the copy to the GPU),
    then augment and normalise each uint8 batch on the device with
    :func:`reslab.data.augment.augment_batch` and :func:`reslab.data.normalize`.

    Args:
        root: the folder. split: ``"train"`` or ``"val"``. channels: 1 or 3 (required here:
            deciding "all grayscale?" would need a pass over every file).
    """

    def __init__(self, root: str | Path, split: str = "train", image_size: int | tuple[int, int] = 32,
                 channels: int = 3, val_fraction: float = 0.2, seed: int = 0) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"StreamingImageFolder split={split!r} must be 'train' or 'val'")
        if channels not in (1, 3):
            raise ConfigError(f"StreamingImageFolder channels={channels!r} must be 1 or 3")
        self.size = _parse_size(image_size)
        self.channels = channels
        index = index_folder(root, float_option("imagefolder", "val_fraction", val_fraction, 0.0, 1.0), seed)
        self.class_names = index.class_names
        self.items = index.train if split == "train" else index.test

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return torch.from_numpy(decode_image(path, self.size, self.channels)), label


register_dataset("imagefolder", load, description="a folder of class folders of images", progress=True,
                 directory="required")
