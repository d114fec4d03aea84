"""Building blocks shared by every block kind: convolutions, shortcuts, drop-path, attention.

Shapes: ``x: (N, C, H, W)`` throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding, no bias (a BN follows)."""
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
        groups=groups, bias=False, dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (a BN follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


#: Where option A puts its new zero channels: ``"back"`` after the input's channels (reslab's
#: default, which its shipped weights were trained with) or ``"both"``, half before and half after
#: (the most-used public PyTorch CIFAR ResNet code, ``F.pad(..., (0, 0, 0, 0, planes // 4, planes // 4))``).
#: A state dict cannot tell them apart (option A has no parameters), yet weights trained with one
#: give near-chance accuracy with the other.
SHORTCUT_PADS = ("back", "both")


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2015: a parameter-free shortcut.

    Subsamples by taking every ``stride``-th pixel and adds zero channels, so the shortcut adds
    nothing to the parameter count and a plain twin has exactly the same parameters. ``pad``
    (:data:`SHORTCUT_PADS`) says where the zero channels go.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, pad: str = "back"):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A cannot reduce channels ({in_planes} -> {out_planes})")
        if pad not in SHORTCUT_PADS:
            raise ValueError(f"pad must be one of {SHORTCUT_PADS}, got {pad!r}")
        self.in_planes, self.out_planes, self.stride, self.pad = in_planes, out_planes, stride, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        if extra:
            front = extra // 2 if self.pad == "both" else 0
            # Pad the channel dimension: F.pad takes (W_left, W_right, H_top, H_bottom, C_front, C_back).
            x = F.pad(x, (0, 0, 0, 0, front, extra - front))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}" + (", pad=both" if self.pad == "both" else "")


def projection_shortcut(in_planes: int, out_planes: int, stride: int, with_bn: bool = True) -> nn.Sequential:
    """Options B and C: a 1×1 convolution (+ BN) that matches shape.

    Named ``downsample`` by the blocks, with children ``0`` (conv) and ``1`` (BN), as in torchvision.
    Pre-activation blocks use it without BN (the input is already normalised).
    """
    layers: list[nn.Module] = [conv1x1(in_planes, out_planes, stride)]
    if with_bn:
        layers.append(nn.BatchNorm2d(out_planes))
    return nn.Sequential(*layers)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a sample's whole residual branch in training.

    Surviving branches are scaled by ``1 / (1 - p)`` so the expected output is unchanged and no
    rescaling is needed at test time.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): rescale channels by a gate computed from global pooling."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel, then spatial attention.

    The shared channel MLP has biases, as in the authors' code (Jongchan/attention-module);
    with them ``cbam_resnet50`` has 28.09 M parameters (28.07 M without). Their code also puts
    a one-channel BN after the 7×7 spatial conv; the paper's equations do not, nor do we.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.spatial = nn.Conv2d(2, 1, kernel_size=spatial_kernel, padding=spatial_kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def mlp(pooled: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.relu(self.fc1(pooled)))

        channel = torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))
        x = x * channel
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def make_attention(kind: str | None, channels: int) -> nn.Module:
    """Return the attention module named ``kind``: ``"se"``, ``"cbam"``, or ``nn.Identity`` for ``None``/``"none"``."""
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "se":
        return SqueezeExcitation(channels)
    if kind == "cbam":
        return CBAM(channels)
    raise ValueError(f"unknown attention {kind!r}")
