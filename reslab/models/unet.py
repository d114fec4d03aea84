"""U-Net on any ResNet-family encoder: ``unet_{encoder}``, e.g. ``unet_resnet34``, ``unet_plain34``.

    >>> model = reslab.create_model("unet_resnet34", num_classes=4)
    >>> model(torch.randn(2, 3, 64, 64)).shape                 # per-pixel logits at input size
    torch.Size([2, 4, 64, 64])
    >>> twin = reslab.create_model("unet_plain34", num_classes=4)   # the plain twin's encoder
    >>> same = reslab.create_model("unet_resnet34", num_classes=4, shortcut="none")  # the same thing

The encoder is the registry's ``features_only`` model of ``{encoder}`` (any CIFAR or ImageNet
ResNet, its plain twin, pre-activation, wide, ResNeXt, with attention; its parameter names under
``encoder.`` are the classifier's, so a classifier's weights load with ``fc.*`` left out). Its
``feature_info`` decides the decoder: starting from the deepest map (reduction R, 32 for ImageNet
encoders, 4 for CIFAR ones), each of log2(R) decoder blocks upsamples ×2 (nearest), concatenates
the encoder map at that reduction (the deepest level there, if any; none at full resolution for
an ImageNet encoder) and applies two conv3×3–BN–ReLU, as segmentation_models_pytorch's ``Unet``
does. The widths follow its default (256, 128, 64, 32, 16) by output reduction (16, 8, 4, 2, 1),
so an ImageNet encoder gets exactly those five and a CIFAR encoder (blocks at reductions 2, 1)
the last two (32, 16). A 3×3 conv head gives ``num_classes`` logits at the input resolution.

Options: ``decoder_channels`` (one width per decoder block), ``encoder_pretrained`` (a shipped
weights tag for the encoder, e.g. ``"cifar10"`` with ``unet_resnet20``); every other option goes
to the encoder (``shortcut="none"``, ``attention="se"``, ``block=...``, ``zero_init_last``, ...).
Input: ``(N, in_chans, H, W)`` with H and W divisible by R; anything else is a ModelConfigError
naming the sizes that work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ModelConfigError
from reslab.models.family import ModelFamily
from reslab.models.registry import create_model, list_models, model_info, register_family

#: Decoder width by the reduction its block outputs at (segmentation_models_pytorch's default
#: ``decoder_channels=(256, 128, 64, 32, 16)`` for reductions 16 … 1); deeper ones stay at 256.
SMP_WIDTHS = {16: 256, 8: 128, 4: 64, 2: 32, 1: 16}
UNET_OPTIONS = ("decoder_channels", "encoder_pretrained")
PREFIX = "unet_"


def default_decoder_width(reduction: int) -> int:
    return SMP_WIDTHS.get(reduction, 256)


class ConvBNReLU(nn.Sequential):
    """conv3×3 (no bias) – BN – ReLU: ``(N, in, H, W) -> (N, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample ×2, concatenate the skip (if any), two conv3×3–BN–ReLU.

    ``x: (N, in, H, W)``, ``skip: (N, skip, 2H, 2W)`` or ``None`` → ``(N, out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.skip_channels = skip_channels
        self.conv1 = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNet(nn.Module):
    """Encoder feature maps → decoder blocks with skip connections → 3×3 conv head.

    Args:
        encoder: a ``features_only`` ResNet-family model (its ``feature_info`` lists every level).
        num_classes: logits per pixel.
        decoder_channels: one width per decoder block, deepest first (default: see
            :data:`SMP_WIDTHS`).
        name, model_options: recorded as ``model_name`` and ``model_options``.

    ``forward(x: (N, C, H, W)) -> (N, num_classes, H, W)``; H and W must be divisible by
    ``self.reduction`` (the encoder's deepest reduction).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, decoder_channels: Sequence[int] | None = None, *,
                 name: str = "unet", model_options: dict[str, Any] | None = None):
        super().__init__()
        self.model_name = name
        self.num_classes = num_classes
        self.in_chans = getattr(encoder, "in_chans", 3)
        entries = encoder.feature_info.entries
        reductions = [e.reduction for e in entries]
        deepest = len(entries) - 1
        self.reduction = reductions[deepest]
        blocks_needed = math.log2(self.reduction)
        if not blocks_needed.is_integer() or any(b > a for a, b in zip(reductions[1:], reductions)):
            raise ModelConfigError(f"{name}: the encoder's reductions {reductions} are not increasing powers of 2; "
                                   "a U-Net decoder upsamples by 2 per block")
        # The skip at each reduction is the deepest level there (CIFAR nets have the stem and
        # layer1 both at full resolution: layer1 carries more), never the bottom level itself.
        skip_at = {reductions[i]: i for i in range(deepest) if reductions[i] < self.reduction}
        output_reductions = [self.reduction // 2 ** (k + 1) for k in range(int(blocks_needed))]
        widths = list(decoder_channels) if decoder_channels is not None else [
            default_decoder_width(r) for r in output_reductions]
        if len(widths) != len(output_reductions) or not all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise ModelConfigError(
                f"{name}: decoder_channels must be {len(output_reductions)} positive integers (one per decoder block, "
                f"for output reductions {output_reductions}), e.g. "
                f"{tuple(default_decoder_width(r) for r in output_reductions)}; got {decoder_channels!r}")
        levels = [deepest] + [skip_at[r] for r in output_reductions if r in skip_at]
        encoder.as_features(sorted(levels))
        self.encoder = encoder
        position = {level: k for k, level in enumerate(encoder.feature_info.out_indices)}
        self._bottom = position[deepest]
        self._skips = [position[skip_at[r]] if r in skip_at else -1 for r in output_reductions]
        blocks, in_channels = [], entries[deepest].num_chs
        for r, width in zip(output_reductions, widths):
            skip_channels = entries[skip_at[r]].num_chs if r in skip_at else 0
            blocks.append(DecoderBlock(in_channels, skip_channels, width))
            in_channels = width
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)
        self.decoder_channels = tuple(widths)
        self.model_options = dict(model_options or {})
        for module in [*self.decoder.modules(), self.head]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def is_plain(self) -> bool:
        """Whether the encoder is a plain twin (no shortcuts); the decoder has none either way."""
        return bool(getattr(self.encoder, "is_plain", False))

    @property
    def feature_info(self):
        """The encoder's feature maps that feed the decoder (timm's ``FeatureInfo``)."""
        return self.encoder.feature_info

    def check_input_size(self, height: int, width: int) -> None:
        """ModelConfigError unless ``height`` and ``width`` are multiples of :attr:`reduction`."""
        r = self.reduction
        if height % r or width % r:
            sizes = ", ".join(str(r * k) for k in (1, 2, 3, 4))
            raise ModelConfigError(
                f"{self.model_name}: input {height}×{width} does not fit: height and width must be multiples of {r} "
                f"(its encoder reduces by {r}): {sizes}, …; e.g. {_nearest(height, r)}×{_nearest(width, r)} "
                "instead; pad or resize the images")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_size(int(x.shape[-2]), int(x.shape[-1]))
        features = self.encoder(x)
        y = features[self._bottom]
        for block, skip in zip(self.decoder, self._skips):
            y = block(y, features[skip] if skip >= 0 else None)
        return self.head(y)


def _nearest(size: int, multiple: int) -> int:
    return max(multiple, int(round(size / multiple)) * multiple)


def encoder_name(name: str) -> str:
    return name.removeprefix(PREFIX)


def build(name: str, num_classes: int = 2, in_chans: int = 3, **options) -> UNet:
    """The registry's builder for ``unet_{encoder}``."""
    encoder = encoder_name(name)
    try:
        entry = model_info(encoder)
    except ModelConfigError as exc:
        raise ModelConfigError(f"{name}: its encoder {encoder!r} is not a model: {exc}") from None
    if entry.model_family is not None:
        examples = ", ".join(n for n in list_models("unet_*"))
        raise ModelConfigError(f"{name}: a U-Net's encoder must be a ResNet-family model with feature maps (CIFAR or "
                               f"ImageNet ResNets, their plain twins, pre-act, wide, ResNeXt); {encoder!r} is not one. "
                               f"Examples: {examples}")
    decoder_channels = options.pop("decoder_channels", None)
    pretrained = options.pop("encoder_pretrained", None)
    if isinstance(decoder_channels, (list, tuple)):
        decoder_channels = tuple(decoder_channels)
    elif decoder_channels is not None:
        raise ModelConfigError(f"{name}: decoder_channels must be a list of integers, e.g. (256, 128, 64, 32, 16), "
                               f"got {decoder_channels!r}")
    for key in ("features_only", "out_indices"):
        if key in options:
            raise ModelConfigError(f"{name}: {key} is not an option of a U-Net (its encoder is already features_only)")
    try:
        body = create_model(encoder, in_chans=in_chans, features_only=True,
                            **({"pretrained": pretrained} if pretrained not in (None, False) else {}), **options)
    except ModelConfigError as exc:
        raise ModelConfigError(f"{name} (U-Net on encoder {encoder}): {exc}; the U-Net's own options are "
                               f"{', '.join(UNET_OPTIONS)}") from None
    settings = {**body.model_options}
    if decoder_channels is not None:
        settings["decoder_channels"] = list(decoder_channels)
    if pretrained not in (None, False):
        settings["encoder_pretrained"] = pretrained
    model = UNet(body, num_classes, decoder_channels, name=name, model_options=settings)
    model.encoder_name = encoder
    return model.train()


#: ``unet_{encoder}`` for any ResNet-family encoder; these are the names ``list_models`` shows.
EXAMPLES = ("unet_resnet18", "unet_resnet34", "unet_resnet50", "unet_plain18", "unet_plain34", "unet_plain50",
            "unet_resnet20", "unet_plain20")

register_family(ModelFamily(
    "unet_{encoder}",
    re.compile(r"unet_\w+"),
    "segmentation",
    "U-Net (segmentation) on any ResNet-family encoder, e.g. unet_resnet34, unet_plain34, unet_resnet20",
    build,
    default_num_classes=2,
    default_input_size=64,
    examples=EXAMPLES,
))

__all__ = ["SMP_WIDTHS", "DecoderBlock", "UNet", "build", "default_decoder_width"]
