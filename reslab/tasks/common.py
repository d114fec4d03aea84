"""What every task's evaluation is made of: bf16 autocast, flattened logits, loss and error sums."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ConfigError
from reslab.models import create_model, model_info


@dataclass
class EvalResult:
    """Mean cross-entropy ``loss``, top-1 ``error`` and ``accuracy`` (fractions) over ``count`` images."""

    loss: float
    error: float
    accuracy: float
    count: int
    split: str = "test"

    def to_dict(self) -> dict:
        return asdict(self)


def autocast_context(device: torch.device, bf16: bool):
    """bf16 autocast (CUDA or CPU) when asked; a no-op otherwise.

    Whether bf16 pays off on a CPU is the caller's decision (:func:`bf16_available`): autocast
    itself works on any CPU, but without bf16 units oneDNN emulates it, slower than float32.
    """
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bf16_available(device: torch.device) -> tuple[bool, str]:
    """``(use bf16?, why not)`` for bf16 autocast on ``device``: CUDA always, CPUs with native bf16 units."""
    if device.type == "cuda":
        return True, ""
    if device.type == "cpu":
        from reslab.utils.cpu import has_native_bf16  # noqa: PLC0415 - reads /proc/cpuinfo once

        if has_native_bf16():
            return True, ""
        return False, ("this CPU has no native bf16 (neither AVX512-BF16 nor AMX-BF16): emulated bf16 would be "
                       "slower than float32, so training in float32")
    return False, f"bf16 autocast is not supported on {device.type}; training in float32"


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def flat_outputs(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(M, K)`` and targets ``(M,)`` for every shipped task, so one loss and one error count
    serve them all: a classifier's ``(N, K)`` and ``(N,)`` as they are, a sequence model's ``(B, T, V)``
    and ``(B, T)`` (classes last) and a segmenter's ``(N, K, H, W)`` and ``(N, H, W)`` (classes in
    dim 1), one row per token or pixel. The number of dimensions tells them apart: only a
    segmenter's logits have four (a task with another layout overrides :meth:`Task.flatten`)."""
    if logits.ndim == 4:
        return logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]), y.reshape(-1)
    if logits.ndim > 2:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


def task_cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy per image, per pixel or per token (see :func:`flat_outputs`); ``"mean"`` averages
    over all of them, ``"sum"`` adds them up."""
    return F.cross_entropy(*flat_outputs(logits, y), reduction=reduction)


@torch.no_grad()
def eval_sums(model: nn.Module, batches, bf16: bool = False, flip: bool = False, flatten=None) -> torch.Tensor:
    """Sum of losses, number of errors and count over ``batches`` of (x, y): float64 (3,) on the model's device.

    ``flip``: test-time augmentation — the logits are the mean of the image's and its mirror
    image's (images ``(N, C, H, W)`` only; token batches are evaluated as they are).

    ``flatten``: how the task turns logits and targets into ``(n, K)`` and ``(n,)`` (default
    :func:`flat_outputs`). The sums stay on the device (no per-batch sync); callers all-reduce them across ranks.
    """
    device = model_device(model)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            with autocast_context(device, bf16):
                logits = model(x).float()
                if flip and x.ndim == 4:
                    logits = (logits + model(x.flip(3)).float()) / 2
            logits, y = (flatten or flat_outputs)(logits, y)
            sums[0] += F.cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(dim=1) != y).sum()
            sums[2] += y.numel()
    finally:
        model.train(was_training)
    return sums


def result_from_sums(sums: torch.Tensor, split: str = "test") -> EvalResult:
    loss_sum, errors, count = (float(v) for v in sums.tolist())
    if count == 0:
        return EvalResult(float("nan"), float("nan"), float("nan"), 0, split)
    return EvalResult(loss_sum / count, errors / count, 1.0 - errors / count, int(count), split)


def sized_model(name: str, num_classes: int | None, in_chans: int, image_size, options) -> nn.Module:
    """``create_model(name)`` for a dataset's classes and channels; models that flatten images to
    vectors also get the image size (unless the options give one)."""
    options = dict(options or {})
    if model_info(name).family == "vector" and image_size and "image_size" not in options:
        options["image_size"] = tuple(int(v) for v in image_size)
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **options)


def check_batch(batch_size: int, accumulate: int, world_size: int, num_train: int | None, data: str,
                unit: str = "images") -> None:
    """ConfigError for a batch size the processes, ``accumulate`` or the training set cannot take."""
    if batch_size % world_size:
        raise ConfigError(f"--batch-size {batch_size} must be divisible by the number of processes "
                          f"({world_size}): each rank takes an equal share of every global batch")
    per_rank = batch_size // world_size
    if per_rank % accumulate:
        raise ConfigError(f"accumulate={accumulate} must divide the per-process batch {per_rank}")
    if num_train is not None and batch_size > num_train:
        raise ConfigError(f"--batch-size {batch_size} is larger than the training set of {data!r} "
                          f"({num_train} {unit}), so an epoch has no full batch; use --batch-size "
                          f"{num_train} or less")
