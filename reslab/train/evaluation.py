"""Evaluation (loss, error, accuracy on a labelled split) and prediction (top-k on image files)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data import DeviceLoader, ImageDataset, normalize
from reslab.data.imagefolder import IMAGE_SUFFIXES, decode_image
from reslab.errors import ConfigError, DatasetError
from reslab.store.jsonfiles import natural_key
from reslab.tasks.common import (  # noqa: F401 - the evaluation primitives, also used from here
    EvalResult,
    autocast_context,
    bf16_available,
    eval_sums,
    flat_outputs,
    model_device,
    result_from_sums,
    task_cross_entropy,
)


def evaluate(model: nn.Module, data, labels: torch.Tensor | None = None, *, split: str = "test",
             batch_size: int = 500, device: str | torch.device | None = None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             channels_last: bool = False, bf16: bool = False) -> EvalResult:
    """Loss, error and accuracy of ``model`` on labelled images.

    Args:
        model: any classifier ``(N, C, H, W) -> (N, K)``; evaluated in eval mode (its mode is
            restored afterwards) on ``device`` (default: where the model is; it is moved back).
        data: an :class:`~reslab.data.ImageDataset` (its ``split`` — "test" or "train" — and its
            mean/std are used), or images: uint8 ``(N, C, H, W)`` (normalised with ``mean``/``std``)
            or float ``(N, C, H, W)`` already normalised.
        labels: int64 ``(N,)`` when ``data`` is a tensor.
    """

    if getattr(data, "kind", None) == "segmentation":
        raise DatasetError("evaluate gives a classifier's loss and error; for segmentation data (masks) use "
                           "reslab.tasks.segment.evaluate_segmentation (pixel accuracy, mIoU) or reslab eval RUN")
    if getattr(data, "kind", None) == "text":
        raise DatasetError("evaluate gives a classifier's loss and error; for text use reslab eval RUN "
                           "(nats and bits per character)")
    if isinstance(data, ImageDataset):
        if split not in ("test", "train"):
            raise ConfigError(f"split={split!r} must be 'test' or 'train'")
        images = getattr(data, f"{split}_images")
        labels = getattr(data, f"{split}_labels")
        mean, std = data.mean, data.std
    else:
        images = data
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise DatasetError("evaluate needs an ImageDataset or images of shape (N, C, H, W) with labels (N,)")
        if labels is None:
            raise DatasetError("evaluate got images without labels; pass labels=int64 tensor (N,)")
    if images.shape[0] == 0:
        raise DatasetError(f"the {split} split has no images to evaluate")
    original = model_device(model)
    target = original if device is None else torch.device(device)
    model.to(target)
    try:
        if images.dtype == torch.uint8:
            loader = DeviceLoader(images, labels, batch_size=batch_size, device=target, train=False,
                                  mean=mean, std=std, channels_last=channels_last)
            batches = iter(loader)
        else:
            if labels.shape[0] != images.shape[0]:
                raise DatasetError(f"{images.shape[0]} images but {labels.shape[0]} labels")
            batches = ((images[i:i + batch_size].to(target), labels[i:i + batch_size].to(target))
                       for i in range(0, images.shape[0], batch_size))
        return result_from_sums(eval_sums(model, batches, bf16).cpu(), split)
    finally:
        model.to(original)


# -- prediction -----------------------------------------------------------------------------------
@dataclass
class Prediction:
    """Top-k classes of one image: ``top`` = [(class index, class name, probability), ...]."""

    source: str
    top: list[tuple[int, str, float]]
    notes: list[str] = field(default_factory=list)  # how the image was converted to the model's input


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with every directory replaced by the PNG/JPEG files in it (sorted by name)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda p: natural_key(p.name))
            if not found:
                raise DatasetError(f"folder {str(path)!r} holds no PNG/JPEG images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.exists() and not path.is_file():
            raise DatasetError(f"{str(path)!r} is neither an image file nor a folder of images")
        elif not path.exists():
            raise DatasetError(f"image {str(path)!r} does not exist")
        else:
            files.append(path)
    return files


def load_images(paths: Sequence[str | Path], in_chans: int, image_size: tuple[int, int],
                notes: list[list[str]] | None = None) -> torch.Tensor:
    """Decode image files into uint8 ``(N, in_chans, H, W)`` exactly as image folders are read for training.

    :func:`reslab.data.imagefolder.decode_image` does it: 16-bit scaled to 8 bits, transparency
    composited over black, colour converted to ``in_chans`` channels, bilinear resize to
    ``image_size`` = (H, W) (the aspect ratio changes if it differs). ``notes``, if given, gets one
    list per image of what was converted.
    """
    if in_chans not in (1, 3):
        raise ConfigError(f"cannot prepare images for a model with {in_chans} input channels (expected 1 or 3)")
    height, width = image_size
    out = torch.empty((len(paths), in_chans, height, width), dtype=torch.uint8)
    for i, path in enumerate(paths):
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"image {str(path)!r} does not exist" if not path.exists()
                               else f"{str(path)!r} is not an image file")
        done: list[str] = []
        out[i] = torch.from_numpy(decode_image(path, (height, width), in_chans, done))
        if notes is not None:
            notes.append(done)
    return out


@torch.no_grad()
def predict_images(model: nn.Module, images: torch.Tensor, class_names: Sequence[str], mean, std,
                   top_k: int = 5, sources: Sequence[str] | None = None) -> list[Prediction]:
    """Top-k softmax probabilities of ``model`` for uint8 ``images (N, C, H, W)``."""

    if top_k < 1:
        raise ConfigError(f"--top-k {top_k} must be at least 1")
    top_k = min(top_k, len(class_names))
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        probabilities = torch.softmax(model(normalize(images.to(device), mean, std)).float(), dim=1).cpu()
    finally:
        model.train(was_training)
    values, indices = probabilities.topk(top_k, dim=1)
    sources = list(sources) if sources is not None else [f"image {i}" for i in range(images.shape[0])]
    return [Prediction(source, [(int(k), class_names[int(k)], float(p)) for p, k in zip(row_p, row_k)])
            for source, row_p, row_k in zip(sources, values, indices)]
