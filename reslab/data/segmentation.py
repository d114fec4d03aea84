"""Segmentation data: images with a class index per pixel.

Two sources, by name (:func:`load_segmentation`, what ``reslab train unet_ENCODER --data``
takes):

* ``shapes`` — generated, seeded: coloured rectangles, ellipses and triangles on noise
  (:func:`make_shapes_segmentation`); classes ``background`` (0), ``rectangle``, ``ellipse``,
  ``triangle``. The colour of a shape says nothing about its class: only the shape does.
* ``segfolder:DIR`` (or ``segfolder`` with ``data_dir=DIR``) — your own images and masks::

      DIR/images/a.png  DIR/masks/a.png          -> a seeded held-out share (val_fraction, default 0.2)
      DIR/train/images/ DIR/train/masks/         -> the given split
      DIR/val/images/   DIR/val/masks/  (or test/)
      DIR/classes.txt                            -> optional: one distinct class name per line, line 1 = index 0

  An image (PNG or JPEG) and its mask (PNG: lossless class indices, mode ``L``, ``P`` — the
  palette index, not its colour — ``1``, ``I`` or ``I;16``) share a stem. Classes: the lines of
  ``classes.txt``, else ``num_classes=K``, else the largest mask value + 1. Every mismatch is a
  :class:`~reslab.errors.DatasetError` naming the file: an image without a mask, a mask without
  an image, two files with one stem, an image and mask of different sizes, a mask value
  ``>= num_classes``, a mask that is not a one-channel PNG, a file that does not decode. All
  images must have one size unless ``image_size=N`` (or ``(H, W)``) resizes them (images
  bilinear, masks nearest).

Images are uint8 ``(N, C, H, W)``, masks uint8 ``(N, H, W)`` (int64 when a class index exceeds
255), both in memory on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data._options import check_options, float_option, int_option
from reslab.data.dataset import ImageSplits, channel_stats
from reslab.data.registry import dataset_entry, list_datasets, register_dataset
from reslab.errors import ConfigError, DatasetError

SHAPE_CLASSES = ("background", "rectangle", "ellipse", "triangle")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_SUFFIX = ".png"
_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")

SHAPES_OPTIONS = {
    "num_train": "training images, default 512",
    "num_test": "test images, default 128",
    "image_size": "side length in pixels, default 64",
    "max_objects": "shapes per image, 1..max_objects, default 3",
    "seed": "default 0",
}
FOLDER_OPTIONS = {
    "num_classes": "classes (default: classes.txt, else the largest mask value + 1)",
    "image_size": "resize images (bilinear) and masks (nearest) to N or (H, W); default: keep (all one size)",
    "channels": "1 (grayscale) or 3 (RGB), default 3",
    "val_fraction": "share held out when there are no train/ and val/ folders, default 0.2",
    "seed": "seed of that split, default 0",
}


@dataclass
class SegmentationDataset(ImageSplits):
    """Images and per-pixel class masks held in memory.

    Attributes:
        train_images, test_images: uint8 ``(N, C, H, W)``, C is 1 or 3.
        train_masks, test_masks: uint8 or int64 ``(N, H, W)``, values in ``0..num_classes-1``.
        class_names: one per class (index 0 is usually the background).
        name, source, options: what was loaded, from where, with which options (for run configs).
        mean, std: per-channel statistics of the training images in [0, 1] units.
    """

    train_images: torch.Tensor
    train_masks: torch.Tensor
    test_images: torch.Tensor
    test_masks: torch.Tensor
    class_names: list[str]
    name: str
    source: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "segmentation"

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) < 2:
            raise DatasetError(f"segmentation data {self.name!r} needs at least 2 classes (background and one more), "
                               f"got {self.class_names}")
        for split in ("train", "test"):
            images, masks = getattr(self, f"{split}_images"), getattr(self, f"{split}_masks")
            where = f"segmentation data {self.name!r}, {split} split"
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
                raise DatasetError(f"{where}: images must be uint8 (N, 1 or 3, H, W), got {images.dtype} "
                                   f"{tuple(images.shape)}")
            if masks.dtype not in (torch.uint8, torch.int64) or masks.ndim != 3:
                raise DatasetError(f"{where}: masks must be uint8 or int64 (N, H, W), got {masks.dtype} "
                                   f"{tuple(masks.shape)}")
            if masks.shape[0] != images.shape[0] or masks.shape[1:] != images.shape[2:]:
                raise DatasetError(f"{where}: masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
            if masks.numel() and int(masks.max()) >= self.num_classes:
                raise DatasetError(f"{where}: a mask holds class {int(masks.max())}, but there are "
                                   f"{self.num_classes} classes (0..{self.num_classes - 1})")
            setattr(self, f"{split}_images", images.cpu().contiguous())
            setattr(self, f"{split}_masks", masks.cpu().contiguous())
        if self.num_train == 0:
            raise DatasetError(f"segmentation data {self.name!r} has no training images")
        if self.num_test and self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise DatasetError(f"segmentation data {self.name!r}: train images {tuple(self.train_images.shape[1:])} "
                               f"and test images {tuple(self.test_images.shape[1:])} differ in (C, H, W)")
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(self.train_images)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)


    def class_frequencies(self, split: str = "train") -> list[float]:
        """The share of pixels of each class in ``split``."""
        masks = getattr(self, f"{split}_masks")
        counts = torch.bincount(masks.reshape(-1).long(), minlength=self.num_classes).double()
        return (counts / counts.sum().clamp_min(1)).tolist()

    def describe(self) -> str:
        h, w = self.image_size
        return (f"{self.name}: {self.num_train} train / {self.num_test} test images, {self.in_chans}x{h}x{w}, "
                f"{self.num_classes} classes ({', '.join(self.class_names)}), from {self.source}")

    def info(self) -> dict[str, Any]:
        """JSON-ready description (for a run's ``config.json``)."""
        return {"name": self.name, "source": self.source, "options": dict(self.options), "kind": self.kind,
                "num_train": self.num_train, "num_test": self.num_test, "num_classes": self.num_classes,
                "in_chans": self.in_chans, "image_size": list(self.image_size), "class_names": list(self.class_names),
                "mean": list(self.mean), "std": list(self.std),
                "class_frequencies": [round(f, 6) for f in self.class_frequencies()]}


# -- the generated shapes set ------------------------------------------------------------------
def make_shapes_segmentation(num_images: int, image_size: int = 64, max_objects: int = 3, min_side: float = 0.25,
                             max_side: float = 0.55, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_images`` uint8 images ``(N, 3, S, S)`` and uint8 masks ``(N, S, S)``, seeded.

    Each image holds 1..``max_objects`` shapes — rectangle (class 1), ellipse (2) or triangle
    (3, pointing up, down, left or right) — of side ``min_side``..``max_side`` × ``S``, each a
    random saturated colour, drawn over uniform noise of brightness 0.2..0.5. A later shape
    covers an earlier one, in the image and in the mask alike; 0 is background.
    """
    if num_images < 1 or image_size < 8 or max_objects < 1 or not 0 < min_side <= max_side <= 1:
        raise DatasetError(f"make_shapes_segmentation: need num_images >= 1, image_size >= 8, max_objects >= 1 and "
                           f"0 < min_side <= max_side <= 1; got {num_images}, {image_size}, {max_objects}, "
                           f"{min_side}, {max_side}")
    generator = torch.Generator().manual_seed(seed)
    size = image_size
    grid_y, grid_x = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                                    torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    images = torch.empty(num_images, 3, size, size, dtype=torch.float32)
    masks = torch.zeros(num_images, size, size, dtype=torch.uint8)

    def uniform(*shape):
        return torch.rand(*shape, generator=generator)

    for n in range(num_images):
        image = 0.2 + 0.3 * uniform(3, size, size)
        for _ in range(int(torch.randint(1, max_objects + 1, (1,), generator=generator))):
            w, h = ((min_side + (max_side - min_side) * uniform(2)) * size).tolist()
            x1, y1 = float(uniform(1)) * (size - w), float(uniform(1)) * (size - h)
            label = int(torch.randint(1, len(SHAPE_CLASSES), (1,), generator=generator))
            pointing = int(torch.randint(0, 4, (1,), generator=generator))
            colour = uniform(3)
            colour[int(torch.randint(0, 3, (1,), generator=generator))] = 1.0  # saturated: stands out of the noise
            u, v = (grid_x - x1) / w, (grid_y - y1) / h  # box coordinates, 0..1 inside
            inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
            if label == 1:
                shape = inside
            elif label == 2:
                shape = (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1.0
            else:
                # Apex at the middle of one side, base along the opposite one.
                along, across = [(u, v), (u, 1 - v), (v, u), (v, 1 - u)][pointing]
                shape = inside & ((2 * along - 1).abs() <= across)
            image[:, shape] = colour[:, None]
            masks[n][shape] = label
        images[n] = image
    return (images * 255).round().clamp(0, 255).to(torch.uint8), masks


def load_shapes(**options: Any) -> SegmentationDataset:
    """The ``shapes`` set (options: :data:`SHAPES_OPTIONS`); train and test come from different seeds."""
    check_options("shapes", options, SHAPES_OPTIONS)
    num_train = int_option("shapes", "num_train", options.get("num_train", 512), 1)
    num_test = int_option("shapes", "num_test", options.get("num_test", 128), 0)
    size = int_option("shapes", "image_size", options.get("image_size", 64), 8)
    max_objects = int_option("shapes", "max_objects", options.get("max_objects", 3), 1)
    seed = int_option("shapes", "seed", options.get("seed", 0), 0)
    train_images, train_masks = make_shapes_segmentation(num_train, size, max_objects, seed=2 * seed)
    if num_test:
        test_images, test_masks = make_shapes_segmentation(num_test, size, max_objects, seed=2 * seed + 1)
    else:
        test_images, test_masks = train_images[:0], train_masks[:0]
    return SegmentationDataset(train_images, train_masks, test_images, test_masks, list(SHAPE_CLASSES), name="shapes",
                               source=f"generated (shapes, seed {seed})",
                               options=dict(num_train=num_train, num_test=num_test, image_size=size,
                                            max_objects=max_objects, seed=seed))


# -- image + mask folders ----------------------------------------------------------------------
def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """Stem -> file of ``folder`` (hidden files skipped); any other file is a DatasetError."""
    if not folder.is_dir():
        raise DatasetError(f"segmentation folder: {folder} is missing; expected {folder.parent}/images/ and "
                           f"{folder.parent}/masks/ (or train/ and val/ folders that each hold both)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in suffixes:
            hint = " (masks must be PNG: JPEG would blur the class indices)" if what == "mask" else ""
            raise DatasetError(f"{path}: not a {what} file; {folder.name}/ may hold only "
                               f"{'/'.join(s.lstrip('.').upper() for s in suffixes)} files{hint}")
        if path.stem in found:
            raise DatasetError(f"{path} and {found[path.stem]} share the stem {path.stem!r}; a {what} must be the only "
                               "file of its name")
        found[path.stem] = path
    if not found:
        raise DatasetError(f"segmentation folder: {folder} holds no {what} files")
    return found


def _pairs(directory: Path) -> list[tuple[Path, Path]]:
    images = _files(directory / "images", IMAGE_SUFFIXES, "image")
    masks = _files(directory / "masks", (MASK_SUFFIX,), "mask")
    for stem, path in images.items():
        if stem not in masks:
            raise DatasetError(f"{path} has no mask: expected {directory / 'masks' / (stem + MASK_SUFFIX)}")
    for stem, path in masks.items():
        if stem not in images:
            raise DatasetError(f"{path} has no image: expected {directory / 'images' / stem}.png (or .jpg)")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _open(path: Path):
    """The decoded image (a PIL image, fully read) and its format (``"PNG"``, ``"JPEG"``, ...)."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - Pillow comes with torchvision; only folders need it

    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy(), handle.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{path} cannot be decoded ({type(exc).__name__}: {exc}); replace or remove it") from None


def _read_mask(path: Path):
    mask, kind = _open(path)
    if kind != "PNG":
        raise DatasetError(f"{path} is a {kind} file named .png; masks must be PNG files")
    if mask.mode not in _MASK_MODES:
        raise DatasetError(f"{path} is a {mask.mode} image; a mask holds one class index per pixel (a one-channel "
                           "PNG: mode L, P, 1 or I), not colours")
    return mask


def _read_image(path: Path, channels: int):
    from PIL import Image  # noqa: PLC0415

    image, _ = _open(path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over black, as imagefolder does.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("RGB" if channels == 3 else "L")


def _load_split(pairs: list[tuple[Path, Path]], channels: int, size: tuple[int, int] | None):
    """Decoded, checked and (with ``size``) resized: uint8 (H, W, C) images and int64 (H, W) masks."""
    from PIL import Image  # noqa: PLC0415

    images, masks, first = [], [], None
    for image_path, mask_path in pairs:
        image, mask = _read_image(image_path, channels), _read_mask(mask_path)
        if image.size != mask.size:
            raise DatasetError(f"{image_path} is {image.size[0]}×{image.size[1]} but its mask {mask_path} is "
                               f"{mask.size[0]}×{mask.size[1]} (width×height); they must be the same size")
        if size is not None:
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
                mask = mask.resize((size[1], size[0]), Image.NEAREST)
        elif first is None:
            first = (image_path, image.size)
        elif image.size != first[1]:
            raise DatasetError(f"{image_path} is {image.size[0]}×{image.size[1]}, but {first[0]} is "
                               f"{first[1][0]}×{first[1][1]}; all images must have one size, or pass image_size=N "
                               "(--set data_options.image_size=N) to resize them")
        array = np.asarray(image, dtype=np.uint8)
        values = np.asarray(mask).astype(np.int64)
        if values.size and values.min() < 0:
            raise DatasetError(f"{mask_path} holds the negative value {int(values.min())}; class indices start at 0")
        images.append(array[:, :, None] if array.ndim == 2 else array)
        masks.append(values)
    return images, masks


def _size_option(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        h, w = (int_option("segfolder", "image_size", v, 1) for v in value)
        return h, w
    side = int_option("segfolder", "image_size", value, 1)
    return side, side


def load_segfolder(root: str | Path, **options: Any) -> SegmentationDataset:
    """Read ``root`` (either layout, see the module docstring) into a :class:`SegmentationDataset`."""
    check_options("segfolder", options, FOLDER_OPTIONS)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"segmentation folder {root} does not exist or is not a directory; give segfolder:DIR with "
                           "DIR/images/ and DIR/masks/ (or DIR/train/ and DIR/val/ holding both)")
    size = _size_option(options.get("image_size"))
    channels = int_option("segfolder", "channels", options.get("channels", 3), 1)
    if channels not in (1, 3):
        raise ConfigError(f"dataset 'segfolder': option channels={channels} must be 1 or 3")
    val_fraction = float_option("segfolder", "val_fraction", options.get("val_fraction", 0.2), 0.0, 1.0)
    seed = int_option("segfolder", "seed", options.get("seed", 0), 0)
    second = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and second is not None:
        train_pairs, test_pairs, split = _pairs(root / "train"), _pairs(second), f"train/ and {second.name}/"
    else:
        pairs = _pairs(root)
        order = np.random.default_rng(seed).permutation(len(pairs))
        held = set(order[:min(int(round(val_fraction * len(pairs))), len(pairs) - 1)].tolist())
        train_pairs = [p for k, p in enumerate(pairs) if k not in held]
        test_pairs = [p for k, p in enumerate(pairs) if k in held]
        split = f"{len(test_pairs)} of {len(pairs)} held out (val_fraction {val_fraction:g}, seed {seed})"
    train_images, train_masks = _load_split(train_pairs, channels, size)
    test_images, test_masks = _load_split(test_pairs, channels, size)
    if test_images and train_images and test_images[0].shape != train_images[0].shape:
        raise DatasetError(f"{test_pairs[0][0]} is {test_images[0].shape[1]}×{test_images[0].shape[0]}, but the "
                           f"training image {train_pairs[0][0]} is {train_images[0].shape[1]}×{train_images[0].shape[0]}; "
                           "pass image_size=N (--set data_options.image_size=N) to resize them all")

    class_names = _class_names(root, options.get("num_classes"))
    largest = max(int(m.max()) for m in train_masks + test_masks)
    if class_names is None:
        class_names = ["background"] + [f"class_{k}" for k in range(1, max(largest, 1) + 1)]
    num_classes = len(class_names)
    for (image_path, mask_path), mask in zip(train_pairs + test_pairs, train_masks + test_masks):
        if int(mask.max()) >= num_classes:
            wrong = int((mask >= num_classes).sum())
            raise DatasetError(f"{mask_path} holds class {int(mask.max())} ({wrong} pixels), but there are "
                               f"{num_classes} classes (0..{num_classes - 1}); fix the mask, or declare more classes "
                               "(classes.txt or num_classes=K)")
    mask_dtype = torch.uint8 if num_classes <= 256 else torch.int64

    def stack(images, masks):
        if not images:
            h, w = train_images[0].shape[:2]
            return torch.zeros(0, channels, h, w, dtype=torch.uint8), torch.zeros(0, h, w, dtype=mask_dtype)
        return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                torch.from_numpy(np.stack(masks)).to(mask_dtype))

    (tri, trm), (tei, tem) = stack(train_images, train_masks), stack(test_images, test_masks)
    chosen = dict(options)
    return SegmentationDataset(tri, trm, tei, tem, class_names, name="segfolder", source=f"{root} ({split})",
                               options=chosen)


def _class_names(root: Path, num_classes: Any) -> list[str] | None:
    path = root / "classes.txt"
    names = None
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        numbered = [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]
        names = [name for _, name in numbered]
        if len(names) < 2:
            raise DatasetError(f"{path} names {len(names)} class(es); it needs one name per line, at least 2 "
                               "(line 1 is class 0, usually the background)")
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            where = ", ".join(str(number) for number, name in numbered if name == twice)
            raise DatasetError(f"{path} names class {twice!r} twice (lines {where}); each class needs its own name, "
                               "one per line in the order of the mask values")
    if num_classes is not None:
        count = int_option("segfolder", "num_classes", num_classes, 2)
        if names is not None and len(names) != count:
            raise ConfigError(f"num_classes={count} disagrees with {path}, which names {len(names)} classes")
        names = names or ["background"] + [f"class_{k}" for k in range(1, count)]
    return names


def _load_shapes_entry(data_dir: str | Path | None = None, download: bool = False, **options: Any) -> SegmentationDataset:
    del data_dir, download  # generated: nothing to read or fetch
    return load_shapes(**options)


def _load_segfolder_entry(data_dir: str | Path | None = None, download: bool = False,
                          **options: Any) -> SegmentationDataset:
    del download  # the user's own folder: nothing official to fetch
    return load_segfolder(data_dir, **options)


register_dataset("shapes", _load_shapes_entry, task="segment", directory="none",
                 description="generated rectangles, ellipses and triangles on noise, seeded")
register_dataset("segfolder", _load_segfolder_entry, task="segment", directory="required",
                 description="your images and masks: DIR/images/ + DIR/masks/")
#: The segmentation data this module registers (``reslab train unet_ENCODER --data``).
SEGMENTATION_DATA = list_datasets("segment")


def parse_data_name(name: str, data_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """``"shapes"`` → ("shapes", None); ``"segfolder:DIR"`` (or ``"segfolder"`` + ``data_dir``) → ("segfolder", DIR).

    Any registered segmentation data (``task="segment"``) is a name here; its entry says whether
    it reads a directory.
    """
    text = str(name)
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    entry = dataset_entry(kind)
    if entry is None or entry.task != "segment":
        raise DatasetError(f"unknown segmentation data {text!r}; use 'shapes' (generated) or 'segfolder:DIR' "
                           "(DIR/images/ + DIR/masks/)")
    if entry.directory == "none":
        if sep:
            raise DatasetError(f"{text!r}: the {kind} set is generated; it takes no directory (options go in "
                               "data_options, e.g. num_train, num_test, image_size, seed)")
        return kind, None
    directory = rest if sep else data_dir
    if not directory and entry.directory == "required":
        raise DatasetError(f"{kind} needs its directory: --data {kind}:DIR (or --data {kind} --data-dir DIR)")
    return kind, Path(directory) if directory else None


def is_segmentation_data(name: str | None) -> bool:
    """Whether ``name`` names segmentation data (``shapes``, ``segfolder``, ``segfolder:DIR``)."""
    entry = dataset_entry(name.partition(":")[0].strip()) if isinstance(name, str) else None
    return entry is not None and entry.task == "segment"


def load_segmentation(name: str, data_dir: str | Path | None = None, **options: Any) -> SegmentationDataset:
    """Load ``shapes`` or ``segfolder:DIR`` (see the module docstring) with ``options``."""
    kind, directory = parse_data_name(name, data_dir)
    return dataset_entry(kind).load(data_dir=directory, **options)


__all__ = ["FOLDER_OPTIONS", "SEGMENTATION_DATA", "SHAPES_OPTIONS", "SHAPE_CLASSES", "SegmentationDataset",
           "is_segmentation_data", "load_segfolder", "load_segmentation", "load_shapes", "make_shapes_segmentation",
           "parse_data_name"]
