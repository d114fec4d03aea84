"""Residual blocks: ``y = merge(F(x), shortcut(x))`` (He et al. 2015, Eq. 1: ``y = F(x) + x``).

Every block in the family is one :class:`ResidualBlock`; the four kinds below only define the
*branch* (the residual function F). The *shortcut* and the *merge* are option values:

=============  ==========================================================================
``shortcut``   ``"A"`` strided identity + zero-padded channels (parameter-free),
               ``"B"`` 1×1 projection only where the shape changes,
               ``"C"`` 1×1 projection in every block,
               ``"none"`` no shortcut: the block is its plain twin's block.
``gated``      highway merge ``T(x)·F(x) + (1 − T(x))·shortcut(x)`` instead of a sum.
``shortcut_pad`` option A's zero channels after the input's (``"back"``) or on both sides
               (``"both"``, the public CIFAR ResNet code's convention).
=============  ==========================================================================

The merge is a small object (:class:`NoMerge` for the plain twin, :class:`SumMerge`,
:class:`HighwayMerge`), so :meth:`ResidualBlock.forward` reads like the paper.

Layer names follow torchvision (``conv1``, ``bn1``, …, ``downsample.0``) so its state dicts load
unchanged; ``downsample`` holds the shortcut path whenever it is not a bare identity, and a
highway block's gate convolution is ``gate``.

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


# -- merges: y from F(x) and shortcut(x) ------------------------------------------------------
class Merge:
    """How a block joins its two paths: ``merge(branch_out, shortcut_out, shortcut_input) -> y``.

    ``branch_out`` is F(x) (after drop-path), ``shortcut_out`` is ``shortcut(x)`` and
    ``shortcut_input`` is what the shortcut was given (the highway gate looks at it too).
    A merge holds no parameters of its own: the highway gate's convolution is the block's ``gate``.
    """

    name = ""

    def __call__(self, branch_out: torch.Tensor, shortcut_out: torch.Tensor,
                 shortcut_input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoMerge(Merge):
    """The plain twin: there is no shortcut to join, ``y = F(x)``."""

    name = "none"

    def __call__(self, branch_out, shortcut_out, shortcut_input):
        return branch_out


class SumMerge(Merge):
    """The residual sum ``y = F(x) + shortcut(x)`` (He et al. 2015, Eq. 1 and 2)."""

    name = "add"

    def __call__(self, branch_out, shortcut_out, shortcut_input):
        return branch_out + shortcut_out


class HighwayMerge(Merge):
    """The highway mix ``y = T·F(x) + (1 − T)·shortcut(x)``, ``T = σ(gate(x))`` (Srivastava et al. 2015).

    ``gate`` is the block's 1×1 convolution (registered on the block as ``block.gate``).
    """

    name = "gated"

    def __init__(self, gate: nn.Conv2d):
        self.gate = gate

    def __call__(self, branch_out, shortcut_out, shortcut_input):
        transform = torch.sigmoid(self.gate(shortcut_input))
        return transform * branch_out + (1.0 - transform) * shortcut_out


def highway_gate(in_planes: int, out_planes: int, stride: int) -> nn.Conv2d:
    """The transform gate's 1×1 convolution (with the block's stride), biased towards carrying."""
    gate = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=True)
    nn.init.constant_(gate.bias, GATE_BIAS_INIT)
    return gate


# -- the block --------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """One block ``y = merge(F(x), shortcut(x))``; subclasses define the branch F.

    Args:
        in_planes: channels of the input.
        out_planes: channels of the output (``planes * expansion``).
        stride: spatial stride of the block (on the branch's 3×3 conv and on the shortcut).
        shortcut: ``"A"``, ``"B"``, ``"C"`` or ``"none"`` (see module docstring).
        gated: highway merge instead of a sum.
        attention: ``None``, ``"se"`` or ``"cbam"`` applied to the branch output.
        drop_path: probability of dropping the branch of a sample in training.
        subsample_shortcut: with option ``"B"``, a block that changes only the resolution (same
            channels) takes every ``stride``-th pixel of its raw input instead of projecting
            (Keras' ResNet V2: a 1×1 max-pool with stride, ``downsample = nn.MaxPool2d(1, stride)``).
        shortcut_pad: with option ``"A"``, where the zero channels go: ``"back"`` or ``"both"``
            (see :data:`reslab.models.layers.SHORTCUT_PADS`).

    Subclasses define :meth:`branch` (F, from the pre-activated input), and pre-activation
    blocks also :meth:`preactivate` and :meth:`after_merge`.
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
        subsample_shortcut: bool = False,
        shortcut_pad: str = "back",
    ):
        super().__init__()
        if shortcut not in SHORTCUT_OPTIONS:
            raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {shortcut!r}")
        if gated and shortcut == "none":
            raise ValueError("a gated (highway) merge needs a shortcut; it cannot be combined with shortcut='none'")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.shortcut_option = shortcut
        self.residual = shortcut != "none"
        self.changes_shape = stride != 1 or in_planes != out_planes
        self.subsample_shortcut = subsample_shortcut and shortcut == "B" and stride != 1 and in_planes == out_planes
        self.shortcut_pad = shortcut_pad
        self.branch_enabled = True

        # (Submodules are created in this order so that parameter initialisation draws the
        # same random numbers as it always has.)
        self.downsample = self._make_shortcut(shortcut) if self.residual else None
        self.gate = highway_gate(in_planes, out_planes, stride) if gated else None
        self.attention = make_attention(attention, out_planes)  # nn.Identity without attention
        self.branch_output = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.merge: Merge = (
            HighwayMerge(self.gate) if gated else SumMerge() if self.residual else NoMerge()
        )
        # Pre-activation blocks feed a shortcut that is not the bare identity (and the gate)
        # their pre-activated input, as in the authors' code; a subsampling one is the identity
        # at a lower resolution and, as in Keras, sees the raw input.
        self.shortcut_preactivated = self.preact and self.downsample is not None and not self.subsample_shortcut

    def _make_shortcut(self, option: str) -> nn.Module | None:
        if option == "A":
            return (ZeroPadShortcut(self.in_planes, self.out_planes, self.stride, self.shortcut_pad)
                    if self.changes_shape else None)
        if option == "B" and not self.changes_shape:
            return None
        if self.subsample_shortcut:
            return nn.MaxPool2d(kernel_size=1, stride=self.stride)
        # Pre-activation blocks project the already normalised input, so no BN in the projection.
        return projection_shortcut(self.in_planes, self.out_planes, self.stride, with_bn=not self.preact)

    # -- y = merge(F(x), shortcut(x)) --------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.branch_enabled:
            return self._forward_without_branch(x)
        pre = self.preactivate(x)
        fx = self.branch_output(self.attention(self.branch(pre)))  # F(x)
        into_shortcut = self.shortcut_input(x, pre)
        y = self.merge(self.drop_path(fx), self.shortcut(into_shortcut), into_shortcut)
        return self.after_merge(y)

    def preactivate(self, x: torch.Tensor) -> torch.Tensor:
        """The branch's input: ``x``, or BN–ReLU(x) in pre-activation blocks."""
        return x

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        """The residual function F, from :meth:`preactivate`'s output."""
        raise NotImplementedError

    def shortcut_input(self, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """What the shortcut (and the highway gate) sees: ``x``, or ``pre`` (see ``shortcut_preactivated``)."""
        return pre if self.shortcut_preactivated else x

    def shortcut(self, shortcut_input: torch.Tensor) -> torch.Tensor:
        return shortcut_input if self.downsample is None else self.downsample(shortcut_input)

    def after_merge(self, y: torch.Tensor) -> torch.Tensor:
        """ReLU after the merge (post-activation blocks); pre-activation blocks add nothing."""
        return F.relu(y)

    def _forward_without_branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual:
            into_shortcut = self.preactivate(x) if self.shortcut_preactivated else x
            return self.after_merge(self.shortcut(into_shortcut))
        if self.changes_shape:
            raise RuntimeError(
                "cannot remove this plain block: it changes the shape "
                f"({self.in_planes}->{self.out_planes} channels, stride {self.stride}) and has no shortcut"
            )
        return x

    # -- the branch's ends -------------------------------------------------------------------
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

    def extra_repr(self) -> str:
        return f"shortcut={self.shortcut_option}, merge={self.merge.name}"


class PreActivationBlock(ResidualBlock):
    """Pre-activation ordering (He et al. 2016): the branch starts with BN–ReLU, nothing follows the merge.

    ReLUs are never in place here: the shortcut may still need the tensor.
    """

    preact = True

    def preactivate(self, x):
        return F.relu(self.bn1(x))

    def after_merge(self, y):
        return y


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
        return self.bn2(self.conv2(self.dropout(out)))

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
        return self.bn3(self.conv3(self.dropout(out)))

    def last_norm(self):
        return self.bn3

    def last_conv(self):
        return self.conv3


class PreActBasicBlock(PreActivationBlock):
    """BN-ReLU-conv ×2 (He et al. 2016, "Identity Mappings"); nothing follows the merge.

    When the block's shortcut is not the bare identity, it sees the pre-activated input, as in
    the authors' code.
    """

    expansion = 1

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

    def branch(self, pre):
        out = self.conv1(pre)
        return self.conv2(self.dropout(F.relu(self.bn2(out))))

    def last_conv(self):
        return self.conv2


class PreActBottleneck(PreActivationBlock):
    """BN-ReLU-conv 1×1, 3×3 (strided), 1×1 (×4), pre-activation ordering."""

    expansion = 4

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

    def branch(self, pre):
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return self.conv3(self.dropout(F.relu(self.bn3(out))))

    def last_conv(self):
        return self.conv3


BLOCKS: dict[tuple[str, bool], type[ResidualBlock]] = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}
