"""DeviceLoader: batches from a dataset that lives, whole, as one uint8 tensor on the device.

The split is moved to the training device once. Each epoch draws one permutation and the
augmentation parameters of every position from a generator seeded by (seed, epoch); each batch
is then a handful of batched tensor ops (gather + crop + flip in one indexing read, cutout,
float conversion and normalisation in one fused op). No per-sample Python, no worker
processes, no host-to-device copy per batch, no ``.item()`` sync in the loop.

Sharding (``rank``/``world_size``, for DistributedDataParallel): every rank draws the *same*
global permutation and takes the positions ``rank, rank + W, rank + 2W, ...`` of it. With
``train=True`` the permutation's last ``N mod W`` positions are dropped first so every rank
has exactly ``N // W`` samples (ranks must run the same number of steps). Then batch ``i`` of
rank ``r`` holds global positions ``i*B*W + r + W*k`` (k < B): the union of the ranks' batch
``i`` is exactly batch ``i`` of a single-process loader with batch size ``B*W`` — including
the augmentation, which depends only on the position. ``drop_last`` then drops a final
partial batch of each rank's shard. With ``train=False`` (evaluation) nothing is shuffled,
augmented or dropped: rank ``r`` gets samples ``r, r+W, ...`` (shards differ in size by at most
one) and the last partial batch is kept, so the ranks together cover every sample once.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from reslab.data.augment import (
    AugmentConfig,
    AugmentParams,
    _scale_shift,
    crop_flip_gather,
    cutout_,
    draw_params,
    prepare_storage,
    to_normalized,
)
from reslab.errors import ConfigError, DatasetError

#: Keep a mirrored copy of the padded split (2x memory, free flips) only up to this size.
FLIP_COPY_MAX_BYTES = 1 << 30

_MIX_A = 0x9E3779B97F4A7C15  # odd 64-bit constants (golden ratio, splitmix64) to mix seed and epoch
_MIX_B = 0xBF58476D1CE4E5B9


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from (seed, epoch); distinct pairs give unrelated streams."""
    value = (int(seed) * _MIX_A + (int(epoch) + 1) * _MIX_B) & 0xFFFFFFFFFFFFFFFF
    value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


class DeviceLoader:
    """Iterate normalised, augmented batches of a device-resident uint8 image tensor.

    Args:
        images: uint8 (N, C, H, W), any device; moved to ``device`` once.
        labels: int64 (N,).
        batch_size: images per batch *per rank*.
        device: where the data lives and batches come out ("cpu", "cuda", a torch.device).
        train: shuffle + augment (True), or keep order with no augmentation (False, evaluation).
        augment: :class:`AugmentConfig`; ``None`` means no augmentation. Ignored when
            ``train=False``.
        mean, std: per-channel statistics in [0, 1] units; ``None`` for both scales to [0, 1].
        seed: base seed; the order and augmentation of epoch ``e`` come from (seed, e).
        drop_last: drop a final partial batch; default ``train``.
        rank, world_size: this process's shard (see the module docstring).
        channels_last: batches come out with channels-last strides (the uint8 storage is kept
            channels-last too, so no per-batch layout conversion is needed).

    Yields ``(x, y)``: x float32 (B, C, H, W) normalised on ``device``, y int64 (B,) on ``device``.
    Call :meth:`set_epoch` before each epoch; iterating twice without it repeats the same epoch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 128,
                 device: str | torch.device = "cpu", train: bool = True,
                 augment: AugmentConfig | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, drop_last: bool | None = None,
                 rank: int = 0, world_size: int = 1, channels_last: bool = False) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetError("DeviceLoader needs images as a uint8 tensor of shape (N, C, H, W), got "
                               + (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                                  else type(images).__name__))
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
            raise DatasetError("DeviceLoader needs labels as an int64 tensor of shape (N,)")
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(f"DeviceLoader got {images.shape[0]} images but {labels.shape[0]} labels")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a positive integer")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ConfigError(f"world_size={world_size!r} must be a positive integer")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank!r} must be an integer in 0..{world_size - 1}")
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = bool(train)
        self.augment = (augment or AugmentConfig.none()) if self.train else AugmentConfig.none()
        self.seed = int(seed)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.rank = rank
        self.world_size = world_size
        self.channels_last = bool(channels_last)
        self.epoch = 0
        self.dataset_size = int(images.shape[0])
        self.in_chans = int(images.shape[1])
        self.image_size = (int(images.shape[2]), int(images.shape[3]))
        self._scale, self._shift = _scale_shift(mean, std, self.in_chans, self.device)

        if self.train:
            self.num_samples = self.dataset_size // world_size
        else:
            self.num_samples = len(range(rank, self.dataset_size, world_size))
        if self.drop_last:
            self._num_batches = self.num_samples // batch_size
        else:
            self._num_batches = -(-self.num_samples // batch_size)
        if self._num_batches == 0 and self.num_samples > 0 or self.train and self.num_samples == 0:
            raise ConfigError(
                f"batch_size={batch_size} leaves no training batch: each of the {world_size} rank(s) has only "
                f"{self.num_samples} of the {self.dataset_size} images (drop_last={self.drop_last}); lower the batch size"
                + (" or use fewer processes" if world_size > 1 else ""))

        # Move once. Channels-last storage makes every gathered batch channels-last for free;
        # padding (and a mirrored copy while it stays under FLIP_COPY_MAX_BYTES) is done once here
        # so each batch is a single gather.
        self._padding = self.augment.crop_padding if self.train else 0
        self._gather = self.train and (self._padding > 0 or self.augment.flip)
        padded_bytes = (self.dataset_size * self.in_chans * (self.image_size[0] + 2 * self._padding)
                        * (self.image_size[1] + 2 * self._padding))
        self._flip_copy = self._gather and self.augment.flip and padded_bytes <= FLIP_COPY_MAX_BYTES
        self._storage = prepare_storage(images.to(self.device, non_blocking=True), self._padding,
                                        self._flip_copy, self.channels_last)
        self._labels = labels.to(self.device, non_blocking=True)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._num_batches

    def _plan(self) -> tuple[torch.Tensor, AugmentParams | None]:
        """This rank's sample indices (int64, on device) and augmentation parameters for the epoch."""
        if not self.train:
            return torch.arange(self.rank, self.dataset_size, self.world_size, device=self.device), None
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        permutation = torch.randperm(self.dataset_size, generator=generator, device=self.device)
        kept = self.num_samples * self.world_size
        # Draw for all N positions (not just the kept ones) so a position's augmentation does
        # not depend on the world size.
        params = draw_params(self.dataset_size, self.augment, self.image_size, generator, self.device)
        positions = torch.arange(self.rank, kept, self.world_size, device=self.device)
        return permutation[positions], params.select(positions)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        index, params = self._plan()
        augment = self.augment
        for batch in range(self._num_batches):
            start = batch * self.batch_size
            stop = min(start + self.batch_size, self.num_samples)
            batch_index = index[start:stop]
            if params is None:
                # Evaluation: shard views need no gather when there is one rank.
                if self.world_size == 1:
                    images = self._storage[start:stop]
                else:
                    images = self._storage.index_select(0, batch_index)
                if self.channels_last:
                    images = images.permute(0, 3, 1, 2)
            else:
                # Every path below writes a fresh batch tensor, so cutout may work in place.
                batch_params = params.select(slice(start, stop))
                if self._gather:
                    images = crop_flip_gather(self._storage, batch_index, batch_params, self.image_size,
                                              self._padding, augment.flip, self.channels_last, self._flip_copy)
                else:
                    images = self._storage.index_select(0, batch_index)
                    if self.channels_last:
                        images = images.permute(0, 3, 1, 2)
                if augment.cutout > 0:
                    cutout_(images, batch_params.centres, augment.cutout)
            x = to_normalized(images, self._scale, self._shift)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self._labels.index_select(0, batch_index)

    def __repr__(self) -> str:
        return (f"DeviceLoader({self.dataset_size} images, batch_size={self.batch_size}, device={self.device}, "
                f"train={self.train}, augment={self.augment}, rank={self.rank}/{self.world_size}, "
                f"batches={len(self)})")
