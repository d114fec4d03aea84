"""Batched augmentation on uint8 tensors: random crop with zero padding, flip, cutout, normalise.

Every operation works on a whole batch with tensor ops on the tensor's device; there is no
per-sample Python. The random parameters of an epoch are drawn once per epoch for every
position of the epoch's permutation (:func:`draw_params`), so the augmentation a sample gets
depends only on (seed, epoch, position) — not on the batch size or the number of ranks.

The crop and the flip are one gather: the split is zero-padded once (and, while small, stored
with a mirrored copy), and a strided view of it lists every crop window, so one
advanced-indexing read produces the final pixels of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from reslab.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation settings.

    crop_padding: pad every side with this many zero pixels, then crop back to (H, W) at a
        uniformly random offset (He et al. 2015 use 4 on CIFAR); 0 turns cropping off.
    flip: mirror left-right with probability 1/2.
    cutout: side of a square set to zero at a uniformly random centre (DeVries & Taylor
        2017; the square may extend past the border); 0 turns it off.
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    def __post_init__(self) -> None:
        for key in ("crop_padding", "cutout"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"augmentation {key}={value!r} must be an integer >= 0")
        if not isinstance(self.flip, bool):
            raise ConfigError(f"augmentation flip={self.flip!r} must be true or false")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(crop_padding=0, flip=False, cutout=0)

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0


@dataclass
class AugmentParams:
    """Random parameters for M samples (all on one device).

    offsets: int64 (M, 2) crop offsets (oy, ox) in 0..2p of the padded image.
    flips: bool (M,) mirror left-right.
    centres: int64 (M, 2) cutout centres (cy, cx) in 0..H-1, 0..W-1.
    """

    offsets: torch.Tensor
    flips: torch.Tensor
    centres: torch.Tensor

    def select(self, index: torch.Tensor | slice) -> "AugmentParams":
        return AugmentParams(self.offsets[index], self.flips[index], self.centres[index])


def draw_params(count: int, config: AugmentConfig, image_size: tuple[int, int],
                generator: torch.Generator, device: torch.device | str) -> AugmentParams:
    """Draw the augmentation of ``count`` samples from ``generator`` (which must live on ``device``).

    The draws happen in a fixed order whatever the config, so turning e.g. cutout on does not
    change the crops of the same seed.
    """
    height, width = image_size
    offsets = torch.randint(0, 2 * config.crop_padding + 1, (count, 2), generator=generator, device=device)
    flips = torch.randint(0, 2, (count,), generator=generator, device=device).bool()
    centres = torch.stack([
        torch.randint(0, height, (count,), generator=generator, device=device),
        torch.randint(0, width, (count,), generator=generator, device=device),
    ], dim=1)
    if not config.flip:
        flips = torch.zeros_like(flips)
    return AugmentParams(offsets, flips, centres)


def prepare_storage(images: torch.Tensor, padding: int, flip_copy: bool, channels_last: bool) -> torch.Tensor:
    """Lay the split out once for fast batched crops.

    images: uint8 (N, C, H, W). Returns a contiguous uint8 tensor: (N, C, H+2p, W+2p), or
    (N, H+2p, W+2p, C) when ``channels_last``, zero-padded; with ``flip_copy`` a left-right
    mirrored copy follows (2N rows), so a flipped crop is an ordinary crop of row ``n + N``
    and costs nothing extra per batch (twice the memory, used only while it is small).
    """
    storage = images.permute(0, 2, 3, 1) if channels_last else images
    if padding:
        n = storage.shape[0]
        if channels_last:
            _, h, w, c = storage.shape
            padded = storage.new_zeros((n, h + 2 * padding, w + 2 * padding, c))
            padded[:, padding:padding + h, padding:padding + w, :] = storage
        else:
            _, c, h, w = storage.shape
            padded = storage.new_zeros((n, c, h + 2 * padding, w + 2 * padding))
            padded[:, :, padding:padding + h, padding:padding + w] = storage
        storage = padded
    if flip_copy:
        storage = torch.cat([storage, storage.flip(2 if channels_last else 3)])
    return storage.contiguous()


def crop_flip_gather(storage: torch.Tensor, index: torch.Tensor, params: AugmentParams,
                     image_size: tuple[int, int], padding: int, flip: bool, channels_last: bool = False,
                     flip_copy: bool = False) -> torch.Tensor:
    """Gather a batch of cropped (and flipped) images straight out of :func:`prepare_storage`'s tensor.

    index: int64 (B,) sample numbers (< N). params: parameters of the B samples. flip: apply
    ``params.flips`` (always true to its value; with ``flip_copy`` the flip is in the row choice).
    Returns uint8 (B, C, H, W); with ``channels_last`` it has channels-last strides.

    A strided view exposes every crop window of every image as ``win[n, oy, ox]`` without
    copying (crop offsets index two extra dims whose strides equal the row/column strides),
    so one advanced-indexing read produces the whole batch. The flipped window at offset ox
    of the mirrored copy equals the flipped crop at offset ``2p - ox`` of the original.
    """
    height, width = image_size
    span = 2 * padding + 1
    oy, ox = params.offsets[:, 0], params.offsets[:, 1]
    rows = index
    if flip_copy:
        rows = index + (storage.shape[0] // 2) * params.flips
        ox = torch.where(params.flips, 2 * padding - ox, ox)
    s = storage.stride()
    if channels_last:
        windows = storage.as_strided((storage.shape[0], span, span, height, width, storage.shape[3]),
                                     (s[0], s[1], s[2], s[1], s[2], s[3]))
        out = windows[rows, oy, ox].permute(0, 3, 1, 2)                          # (B, C, H, W) view of (B, H, W, C)
    else:
        windows = storage.as_strided((storage.shape[0], storage.shape[1], span, span, height, width),
                                     (s[0], s[1], s[2], s[3], s[2], s[3]))
        out = windows[rows, :, oy, ox]                                           # (B, C, H, W)
    if flip and not flip_copy:
        out = torch.where(params.flips[:, None, None, None], out.flip(3), out)
    return out


def cutout_(images: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square centred at ``centres`` in every image, in place.

    images: (B, C, H, W) (any strides); centres: int64 (B, 2). The square covers rows
    ``cy - size//2 .. cy - size//2 + size - 1`` clipped to the image.
    """
    if size <= 0:
        return images
    _, _, height, width = images.shape
    top = centres[:, 0:1] - size // 2                                             # (B, 1)
    left = centres[:, 1:2] - size // 2
    ys = torch.arange(height, device=images.device)
    xs = torch.arange(width, device=images.device)
    in_rows = (ys >= top) & (ys < top + size)                                     # (B, H)
    in_cols = (xs >= left) & (xs < left + size)                                   # (B, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]                  # (B, 1, H, W)
    return images.masked_fill_(mask, 0)


def augment_batch(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment one uint8 batch (B, C, H, W) already on its device; returns a new uint8 batch.

    For data that streams in batches (e.g. :class:`reslab.data.imagefolder.StreamingImageFolder`
    through a DataLoader): the same crop/flip/cutout as :class:`DeviceLoader`, padded per batch.
    ``generator`` must live on ``images.device``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError(f"augment_batch expects uint8 images (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if not config.enabled:
        return images.clone()
    size = (int(images.shape[2]), int(images.shape[3]))
    params = draw_params(images.shape[0], config, size, generator, images.device)
    storage = prepare_storage(images, config.crop_padding, flip_copy=False, channels_last=False)
    index = torch.arange(images.shape[0], device=images.device)
    out = crop_flip_gather(storage, index, params, size, config.crop_padding, config.flip)
    if config.cutout > 0:
        out = cutout_(out.contiguous(), params.centres, config.cutout)
    return out


def _scale_shift(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each float32 (1, C, 1, 1), with ``x_uint8 * scale + shift`` the normalised image."""
    if mean is None and std is None:
        mean, std = (0.0,) * channels, (1.0,) * channels
    if mean is None or std is None:
        raise ConfigError("give both mean and std for normalisation, or neither (then images are scaled to [0, 1])")
    mean_t = torch.as_tensor([float(m) for m in mean], dtype=torch.float64)
    std_t = torch.as_tensor([float(s) for s in std], dtype=torch.float64)
    if mean_t.numel() != channels or std_t.numel() != channels:
        raise ConfigError(f"mean/std have {mean_t.numel()}/{std_t.numel()} values but the images have {channels} channels")
    if bool((std_t <= 0).any()):
        raise ConfigError(f"std must be positive, got {tuple(std_t.tolist())}")
    scale = 1.0 / (255.0 * std_t)
    shift = -mean_t / std_t
    return (scale.to(device=device, dtype=torch.float32).view(1, -1, 1, 1),
            shift.to(device=device, dtype=torch.float32).view(1, -1, 1, 1))


def to_normalized(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ``images * scale + shift``, keeping the strides (channels-last stays).

    In-place multiply-add on the fresh float copy: on CPU this is ~5x faster than ``addcmul``
    with broadcast operands.
    """
    return images.to(torch.float32).mul_(scale).add_(shift)


def normalize(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """uint8 (N, C, H, W) in 0..255 -> float32 ``(x / 255 - mean) / std`` per channel, same device/strides.

    mean, std: C values in [0, 1] units (as :attr:`ImageDataset.mean`); both ``None`` only
    scales to [0, 1]. Accepts (C, H, W) single images too.
    """
    if images.dtype != torch.uint8:
        raise ConfigError(f"normalize expects uint8 images (0..255), got {images.dtype}")
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    if batch.ndim != 4:
        raise ConfigError(f"normalize expects images of shape (N, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    scale, shift = _scale_shift(mean, std, batch.shape[1], batch.device)
    out = to_normalized(batch, scale, shift)
    return out[0] if single else out
