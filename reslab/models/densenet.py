"""DenseNet-BC for CIFAR-sized images (Huang et al. 2017, "Densely Connected Convolutional Networks").

``densenet_bc_{L}_{k}``: depth ``L = 6n + 4`` (three dense blocks of ``n`` bottleneck layers),
growth rate ``k``. The network is

    conv3×3 (in_chans → 2k)
    dense block 1 (n layers) → transition 1 → dense block 2 → transition 2 → dense block 3
    BN-ReLU → global average pool → linear

Each :class:`DenseLayer` is BN-ReLU-Conv1×1 (→ 4k) then BN-ReLU-Conv3×3 (→ k), and its ``k``
new channels are concatenated to its input. Each :class:`Transition` is BN-ReLU-Conv1×1
(→ ``floor(θ·C)`` channels, compression ``θ`` = 0.5) then 2×2 average pooling, so a 32×32
image ends at 8×8 and the 8×8 digits at 2×2.

Options (``model.model_options``): ``dropout`` (0.0: applied after every conv except the
first, as in the paper: both convs of each dense layer and the transition convs),
``compression`` (0.5, the θ of the transitions; 1.0 gives DenseNet-B-like widths) and
``efficient`` (False; True recomputes each layer's concatenation + BN-ReLU-Conv1×1 in the
backward pass with :func:`torch.utils.checkpoint.checkpoint`, the memory-efficient
implementation of Pleiss et al. 2017: activation memory grows linearly, not quadratically,
with depth; the outputs and gradients are unchanged).

Parameter counts (10 classes): ``densenet_bc_100_12`` has 769,162 parameters on RGB input
(768,730 on 1-channel input), the paper's "0.8M" (CIFAR-10+ error 4.51 %).

**Depth = weight layers.** ``reslab.models.weight_layers(model)`` counts the conv and linear
layers on the main path, He et al.'s convention, and for DenseNet-BC it gives exactly ``L``:
1 first conv + 3·n dense layers × 2 convs + 2 transition convs + 1 linear = 6n + 4
(``densenet_bc_100_12``: 1 + 96 + 2 + 1 = 100). Note that a DenseNet has no
:class:`~reslab.models.ResidualBlock`, so ``named_blocks``/``removable_blocks`` give ``[]``
and the lesion study does not apply; use :meth:`DenseNet.named_dense_layers` for hooks.

**Matched to ResNet-20 on the digits** (1 channel, 10 classes), for the family comparison:

    model                 parameters
    resnet20                 269,434
    plain20                  269,434   (same layers, no shortcuts)
    highway20                283,338   (+ the 1×1 gate convs)
    densenet_bc_34_17        271,665   (closest of L = 6n+4, k = 8..24: +2,231, +0.83 %)

(next best: densenet_bc_40_15 with 272,440, densenet_bc_52_12 with 264,154.) That is
:data:`MATCHED_TO_RESNET20`.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reslab.errors import ModelConfigError
from reslab.models.family import ModelFamily
from reslab.models.registry import register_family
from reslab.models.network import _freeze_bn_stats_on_recompute

# The parameter-matched DenseNet-BC of ResNet-20 on the digits (see the module docstring).
MATCHED_TO_RESNET20 = "densenet_bc_34_17"

DEPTH_RULE = (
    "DenseNet-BC depth L = 6n+4: three dense blocks of n bottleneck layers each (two convs per layer), "
    "plus the first conv, two transition convs and the classifier, e.g. 40, 100, 190; growth k ≥ 1 "
    "(e.g. densenet_bc_100_12, densenet_bc_190_40)"
)
DEFAULT_OPTIONS = {"dropout": 0.0, "compression": 0.5, "efficient": False}
OPTIONS_HELP = "dropout (probability in [0, 1), default 0.0), compression (θ in (0, 1], default 0.5), " \
               "efficient (True or False, default False)"


class DenseLayer(nn.Module):
    """One bottleneck layer: ``cat(inputs)`` → BN-ReLU-Conv1×1 (4k) → BN-ReLU-Conv3×3 (k).

    ``forward`` takes the list of feature maps so far and returns only the ``k`` new channels;
    :class:`DenseBlock` does the concatenation, so with ``efficient`` the concatenated tensor
    is never stored for backward.
    """

    def __init__(self, in_channels: int, growth: int, dropout: float = 0.0, efficient: bool = False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout
        self.efficient = efficient

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(torch.cat(features, 1))))
        return F.dropout(out, self.dropout, self.training) if self.dropout > 0 else out

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.efficient and self.training and torch.is_grad_enabled():
            # Non-reentrant checkpointing restores the RNG state (dropout masks match); the
            # recomputation must not update norm1's running statistics a second time.
            out = checkpoint(self.bottleneck, *features, use_reentrant=False, context_fn=_freeze_bn_stats_on_recompute(self))
        else:
            out = self.bottleneck(*features)
        out = self.conv2(F.relu(self.norm2(out)))
        return F.dropout(out, self.dropout, self.training) if self.dropout > 0 else out


class DenseBlock(nn.Module):
    """``n`` dense layers; the output concatenates the input and every layer's ``k`` channels."""

    def __init__(self, num_layers: int, in_channels: int, growth: int, dropout: float, efficient: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, dropout, efficient) for i in range(num_layers))
        self.out_channels = in_channels + num_layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1×1 (compression θ) then 2×2 average pooling (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        if dropout > 0:
            self.drop = nn.Dropout(dropout)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC for CIFAR-sized inputs; see the module docstring.

    Input ``(N, in_chans, H, W)`` with ``H, W ≥ 4`` (two 2×2 poolings), output ``(N, num_classes)``.
    """

    is_plain = False

    def __init__(self, depth: int = 100, growth: int = 12, num_classes: int = 10, in_chans: int = 3,
                 dropout: float = 0.0, compression: float = 0.5, efficient: bool = False, *, name: str | None = None):
        super().__init__()
        n = dense_layers_per_block(depth, growth)
        self.model_name = f"densenet_bc_{depth}_{growth}" if name is None else name
        self.model_options = {"dropout": dropout, "compression": compression, "efficient": efficient}
        self.depth, self.growth, self.num_classes, self.in_chans = depth, growth, num_classes, in_chans

        channels = 2 * growth
        self.conv1 = nn.Conv2d(in_chans, channels, kernel_size=3, padding=1, bias=False)
        for i in (1, 2, 3):
            block = DenseBlock(n, channels, growth, dropout, efficient)
            self.add_module(f"block{i}", block)
            channels = block.out_channels
            if i < 3:
                out = max(1, int(compression * channels))
                self.add_module(f"trans{i}", Transition(channels, out, dropout))
                channels = out
        self.bn_final = nn.BatchNorm2d(channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def named_dense_layers(self) -> list[tuple[str, DenseLayer]]:
        """``(qualified_name, layer)`` for every dense layer, in forward order (hook points)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, DenseLayer)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W) -> (N, num_features, H/4, W/4)``, after the final BN-ReLU, before pooling."""
        x = self.conv1(x)
        x = self.trans1(self.block1(x))
        x = self.trans2(self.block2(x))
        x = self.block3(x)
        return F.relu(self.bn_final(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def dense_layers_per_block(depth: int, growth: int) -> int:
    """``n`` of DenseNet-BC-``depth``; :class:`ModelConfigError` with the rule if invalid."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 10 or (depth - 4) % 6:
        raise ModelConfigError(f"DenseNet-BC depth {depth!r} is not valid: {DEPTH_RULE}")
    if not isinstance(growth, int) or isinstance(growth, bool) or growth < 1:
        raise ModelConfigError(f"DenseNet-BC growth rate {growth!r} is not valid: {DEPTH_RULE}")
    return (depth - 4) // 6


def build(name: str, depth: int, growth: int, num_classes: int = 10, in_chans: int = 3, **options) -> DenseNet:
    """The registry's builder for ``densenet_bc_{L}_{k}`` (``depth = L``, ``growth = k``)."""
    dense_layers_per_block(depth, growth)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ModelConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; DenseNet-BC options are: {OPTIONS_HELP}")
    settings = {**DEFAULT_OPTIONS, **options}
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ModelConfigError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ModelConfigError(f"{name}: in_chans must be a positive integer, got {in_chans!r}")
    dropout = settings["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"{name}: dropout must be a probability in [0, 1), got {dropout!r}")
    compression = settings["compression"]
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0.0 < compression <= 1.0:
        raise ModelConfigError(f"{name}: compression must be in (0, 1] (θ of the transitions; 0.5 for DenseNet-BC), "
                               f"got {compression!r}")
    if not isinstance(settings["efficient"], bool):
        # A string such as "false" from a config file would otherwise silently mean True.
        raise ModelConfigError(f"{name}: efficient must be True or False, got {settings['efficient']!r}")
    settings = {"dropout": float(dropout), "compression": float(compression), "efficient": settings["efficient"]}
    return DenseNet(depth, growth, num_classes=num_classes, in_chans=in_chans, **settings, name=name)


register_family(ModelFamily(
    "densenet_bc_{L}_{k}",
    re.compile(r"densenet_bc_(\d+)_(\d+)"),
    "cifar",
    "DenseNet-BC of depth L = 6n+4 and growth rate k (Huang et al. 2017), CIFAR version",
    build,
    default_num_classes=10,
    default_input_size=32,
    examples=("densenet_bc_40_12", "densenet_bc_100_12", "densenet_bc_100_24", "densenet_bc_190_40",
              MATCHED_TO_RESNET20),
))
