"""Residual blocks: ``merge(branch(x), shortcut(x))``.

Every block in the family is one :class:`ResidualBlock`; the four kinds below only define the
*branch* (the residual function F). The *shortcut* and the *merge* are values:

=============  ==========================================================================
``shortcut``   ``"A"`` strided identity + zero-padded channels (parameter-free),
               ``"B"`` 1×1 projection only where the shape changes,
               ``"C"`` 1×1 projection in every block,
               ``"none"`` no shortcut: the block is its plain twin's block.
``gated``      highway merge ``T(x)·F(x) + (1 − T(x))·shortcut(x)`` instead of a sum.
=============  ==========================================================================

Layer names follow torchvision (``conv1``, ``bn1``, …, ``downsample.0``) so its state dicts load
unchanged; ``downsample`` holds the shortcut path whenever it is not a bare identity.

Two hook points serve the analyses without touching the maths:

* ``block.branch_output`` (an ``nn.Identity``) sees F(x) after its last BN (and attention),
  before drop-path and the merge — the "layer response" of He et al. 2015, Fig. 7.
* ``block.branch_enabled = False`` removes the branch at test time (lesion study, Veit et al.
  2016): a residual block then passes only its shortcut, a plain block whose shape is kept
  becomes the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reslab.models.layers import (
    DropPath,
    ZeroPadShortcut,
    conv1x1,
    conv3x3,
    make_attention,
    projection_shortcut,
)

SHORTCUT_OPTIONS = ("A", "B", "C", "none")

# A highway gate starts biased towards carrying the input through (Srivastava et al. 2015).
GATE_BIAS_INIT = -2.0


class ResidualBlock(nn.Module):
    """One block ``merge(branch(x), shortcut(x))``; subclasses define :meth:`branch`.

    Args:
        in_planes: channels of the input.
        out_planes: channels of the output (``planes * expansion``).
        stride: spatial stride of the block (on the branch's 3×3 conv and on the shortcut).
        shortcut: ``"A"``, ``"B"``, ``"C"`` or ``"none"`` (see module docstring).
        gated: highway merge instead of a sum.
        attention: ``None``, ``"se"`` or ``"cbam"`` applied to the branch output.
        drop_path: probability of dropping the branch of a sample in training.
    """

    expansion = 1
    preact = False

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int = 1,
        shortcut: str = "B",
        gated: bool = False,
        attention: str | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if shortcut not in SHORTCUT_OPTIONS:
            raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {shortcut!r}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.shortcut_option = shortcut
        self.residual = shortcut != "none"
        self.changes_shape = stride != 1 or in_planes != out_planes
        self.branch_enabled = True

        self.downsample = self._make_shortcut(shortcut) if self.residual else None
        self.gate = None
        if gated:
            if not self.residual:
                raise ValueError("a gated (highway) merge needs a shortcut; it cannot be combined with shortcut='none'")
            self.gate = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=True)
            nn.init.constant_(self.gate.bias, GATE_BIAS_INIT)
        self.attention = make_attention(attention, out_planes)
        self.branch_output = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _make_shortcut(self, option: str) -> nn.Module | None:
        if option == "A":
            return ZeroPadShortcut(self.in_planes, self.out_planes, self.stride) if self.changes_shape else None
        if option == "B" and not self.changes_shape:
            return None
        # Pre-activation blocks project the already normalised input, so no BN in the projection.
        return projection_shortcut(self.in_planes, self.out_planes, self.stride, with_bn=not self.preact)

    # -- the residual function -------------------------------------------------------------
    def branch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(F(x), shortcut_input)``; ``shortcut_input`` is ``x`` or its pre-activation."""
        raise NotImplementedError

    def last_norm(self) -> nn.BatchNorm2d | None:
        """The BN that ends the branch (``None`` for pre-activation blocks, which end in a conv)."""
        return None

    def last_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Make the branch output zero at initialisation, so the block starts as its shortcut.

        Post-activation blocks zero the last BN's γ (Goyal et al. 2017); pre-activation blocks,
        which end in a convolution, zero that convolution's weights.
        """
        norm = self.last_norm()
        if norm is not None:
            nn.init.zeros_(norm.weight)
        else:
            nn.init.zeros_(self.last_conv().weight)

    # -- merge -----------------------------------------------------------------------------
    def shortcut(self, shortcut_input: torch.Tensor) -> torch.Tensor:
        return shortcut_input if self.downsample is None else self.downsample(shortcut_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.branch_enabled:
            return self._forward_without_branch(x)
        out, shortcut_input = self.branch(x)
        if self.attention is not None:
            out = self.attention(out)
        out = self.branch_output(out)
        out = self.drop_path(out)
        if self.residual:
            identity = self.shortcut(shortcut_input)
            if self.gate is not None:
                transform = torch.sigmoid(self.gate(shortcut_input))
                out = transform * out + (1.0 - transform) * identity
            else:
                out = out + identity
        return out if self.preact else F.relu(out)

    def _forward_without_branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            shortcut_input = self._preactivate(x) if (self.preact and self.downsample is not None) else x
            out = self.shortcut(shortcut_input)
            return out if self.preact else F.relu(out)
        if self.changes_shape:
            raise RuntimeError(
                "cannot remove this plain block: it changes the shape "
                f"({self.in_planes}->{self.out_planes} channels, stride {self.stride}) and has no shortcut"
            )
        return x

    def _preactivate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        merge = "gated" if self.gate is not None else ("add" if self.residual else "none")
        return f"shortcut={self.shortcut_option}, merge={merge}"


class BasicBlock(ResidualBlock):
    """Two 3×3 convs: conv-BN-ReLU-conv-BN (He et al. 2015); the ReLU follows the merge."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 dropout: float = 0.0, **merge_options):
        if groups != 1 or base_width != 64:
            raise ValueError("basic blocks support only groups=1 and width_per_group=64")
        super().__init__(in_planes, planes * self.expansion, stride, **merge_options)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    def branch(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.dropout(out)))
        return out, x

    def last_norm(self):
        return self.bn2

    def last_conv(self):
        return self.conv2


class Bottleneck(ResidualBlock):
    """1×1 reduce, 3×3, 1×1 expand (×4). The stride sits on the 3×3 conv (torchvision's "v1.5").

    The 2015 paper strides the first 1×1 instead; v1.5 costs a little more (4.09 vs 3.86 G
    multiply-adds for ResNet-50) and is what torchvision's weights expect.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 dropout: float = 0.0, **merge_options):
        super().__init__(in_planes, planes * self.expansion, stride, **merge_options)
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(in_planes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)

    def branch(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.dropout(out)))
        return out, x

    def last_norm(self):
        return self.bn3

    def last_conv(self):
        return self.conv3


class PreActBasicBlock(ResidualBlock):
    """BN-ReLU-conv ×2 (He et al. 2016, "Identity Mappings"); nothing follows the merge.

    When the block has a projection shortcut, the shortcut sees the pre-activated input, as in
    the authors' code. ReLUs are never in place here: the shortcut may still need the tensor.
    """

    expansion = 1
    preact = True

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 dropout: float = 0.0, **merge_options):
        if groups != 1 or base_width != 64:
            raise ValueError("basic blocks support only groups=1 and width_per_group=64")
        super().__init__(in_planes, planes * self.expansion, stride, **merge_options)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(planes, planes)

    def _preactivate(self, x):
        return F.relu(self.bn1(x))

    def branch(self, x):
        pre = self._preactivate(x)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out, (pre if self.downsample is not None else x)

    def last_conv(self):
        return self.conv2


class PreActBottleneck(ResidualBlock):
    """BN-ReLU-conv 1×1, 3×3 (strided), 1×1 (×4), pre-activation ordering."""

    expansion = 4
    preact = True

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 dropout: float = 0.0, **merge_options):
        super().__init__(in_planes, planes * self.expansion, stride, **merge_options)
        width = int(planes * (base_width / 64.0)) * groups
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = conv1x1(width, planes * self.expansion)

    def _preactivate(self, x):
        return F.relu(self.bn1(x))

    def branch(self, x):
        pre = self._preactivate(x)
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(self.dropout(F.relu(self.bn3(out))))
        return out, (pre if self.downsample is not None else x)

    def last_conv(self):
        return self.conv3


BLOCKS: dict[tuple[str, bool], type[ResidualBlock]] = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}
