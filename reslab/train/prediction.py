"""Prediction for the tasks other than classification (a classifier's top-k is :func:`reslab.train.predict`):
a segmenter's class per pixel of image files, and a language model's continuation of a prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reslab.data import normalize
from reslab.errors import ConfigError, DatasetError
from reslab.train.evaluation import image_files, load_images, model_device


@dataclass
class MaskPrediction:
    """The class of every pixel of one image: ``mask`` int64 ``(H, W)`` at the image's own size,
    ``fractions`` the share of its pixels in each class (one per class, summing to 1)."""

    source: str
    mask: torch.Tensor
    fractions: list[float]
    notes: list[str] = field(default_factory=list)  # how the image was converted to the model's input


def _original_size(path: Path) -> tuple[int, int]:
    from PIL import Image  # noqa: PLC0415 - lazy, as decode_image's

    with Image.open(path) as image:
        width, height = image.size
    return height, width


@torch.no_grad()
def predict_masks(run, images: Sequence[str | Path], batch_size: int = 16) -> list[MaskPrediction]:
    """Masks of image files (or folders of them) from a segmentation run (a :class:`~reslab.train.loading.LoadedRun`).

    Each image is read as segmentation folders are for training and resized to the run's image
    size; the logits are resized back to the file's size (bilinear) before the most probable class
    of each pixel is taken, so a mask lies over its image.
    """
    paths = image_files(list(images))
    model = run.model
    device = model_device(model)
    num_classes = int(run.config["num_classes"])
    was_training = model.training
    model.eval()
    results: list[MaskPrediction] = []
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            notes: list[list[str]] = []
            x = load_images(chunk, int(run.config["in_chans"]), run.image_size, notes)
            logits = model(normalize(x.to(device), run.mean, run.std)).float()
            for path, row, done in zip(chunk, logits, notes):
                size = _original_size(path)
                if tuple(row.shape[-2:]) != size:
                    row = F.interpolate(row[None], size=size, mode="bilinear", align_corners=False)[0]
                mask = row.argmax(0).cpu()
                counts = torch.bincount(mask.reshape(-1), minlength=num_classes).double()
                results.append(MaskPrediction(str(path), mask, (counts / counts.sum()).tolist(), done))
    finally:
        model.train(was_training)
    return results


def mask_palette() -> list[int]:
    """A PNG palette (768 values) of well-separated colours, class 0 black: each class index's bits
    spread over the high bits of red, green and blue, so neighbouring indices differ in colour."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
            if not value:
                break
        palette += [r, g, b]
    return palette


def save_mask(mask: torch.Tensor, path: str | Path) -> Path:
    """Write ``mask`` (class indices ``(H, W)``) as a palette PNG: the pixel value is the class index
    (what ``segfolder`` reads back as a mask), the palette only shows it in colour. Atomic."""
    from PIL import Image  # noqa: PLC0415

    from reslab.utils import atomic_path  # noqa: PLC0415

    if int(mask.max()) > 255:
        raise ConfigError(f"{path}: a palette PNG holds class indices up to 255, the mask has {int(mask.max())}")
    image = Image.fromarray(mask.numpy().astype(np.uint8), mode="P")
    image.putpalette(mask_palette())  # the same colours in every run: class k always looks the same
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


# -- language models -----------------------------------------------------------------------------
def text_context(run) -> int:
    """The longest window a language-model run reads: the window it was trained on (its data's
    ``context``), no longer than its model takes."""
    config = run.config
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    trained = (dataset.get("options") or {}).get("context") or (config.get("data_options") or {}).get("context")
    window = int(trained or 128)
    limit = getattr(run.model, "context", None)
    return min(window, int(limit)) if limit else window


@torch.no_grad()
def continue_text(run, prompt: str, chars: int = 200, temperature: float = 0.0, seed: int = 0) -> str:
    """The ``chars`` characters a language-model run writes after ``prompt``.

    temperature: 0 takes the most probable character each time (greedy, deterministic); above 0
    samples from the softmax of the logits divided by it, from a generator seeded with ``seed``.
    The model reads at most the window it was trained on (:func:`text_context`), the last
    characters of the prompt and of what it wrote so far.
    """
    vocabulary = list(run.class_names)
    index = {c: i for i, c in enumerate(vocabulary)}
    if not prompt:
        raise ConfigError("the prompt is empty: give at least one character to continue, e.g. \"def \"")
    unknown = sorted({c for c in prompt if c not in index})
    if unknown:
        raise DatasetError(f"the prompt holds characters the model never saw ({''.join(unknown[:10])!r}); its "
                           f"vocabulary has {len(vocabulary)} characters: rewrite the prompt without them")
    if chars < 1:
        raise ConfigError(f"--chars {chars}: give a positive number of characters to write")
    if temperature < 0:
        raise ConfigError(f"--temperature {temperature}: give 0 (greedy) or a positive temperature, e.g. 0.8")
    model = run.model
    device = model_device(model)
    window = text_context(run)
    generator = torch.Generator().manual_seed(int(seed))
    tokens = [index[c] for c in prompt]
    was_training = model.training
    model.eval()
    try:
        for _ in range(int(chars)):
            x = torch.tensor(tokens[-window:], dtype=torch.int64, device=device)[None]
            logits = model(x)[0, -1].float().cpu()
            if temperature == 0:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / temperature, dim=0), 1, generator=generator))
            tokens.append(token)
    finally:
        model.train(was_training)
    return "".join(vocabulary[t] for t in tokens[len(prompt):])


__all__ = ["MaskPrediction", "continue_text", "mask_palette", "predict_masks", "save_mask", "text_context"]
