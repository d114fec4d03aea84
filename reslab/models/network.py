"""A network is a spec (stem, stages of blocks, head) fed to one builder, :class:`ResNet`.

CIFAR vs ImageNet, wide, ResNeXt and pre-activation networks differ only in spec values; the
plain twin differs only in ``shortcut="none"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from reslab.errors import ModelConfigError
from reslab.models.blocks import BLOCKS, ResidualBlock
from reslab.models.features import FeatureEntry, FeatureInfo, check_out_indices


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_blocks`` blocks of ``planes`` (output ``planes × expansion``)."""

    num_blocks: int
    planes: int
    stride: int


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that defines an architecture, independent of its shortcut choice.

    Attributes:
        block: ``"basic"`` or ``"bottleneck"``.
        preact: pre-activation ordering (BN-ReLU-conv) with a final BN-ReLU before pooling.
        stem: ``"imagenet"`` (7×7/2 conv, BN, ReLU, 3×3/2 max-pool) or ``"cifar"`` (3×3 conv).
        stem_width: channels after the stem.
        stages: the stages, in order (named ``layer1``, ``layer2``, … in the module).
        groups, width_per_group: ResNeXt cardinality and width (bottlenecks only).
        depth: the number of weight layers on the main path (the "depth" in the name).
        family: ``"cifar"`` or ``"imagenet"`` (default input size and profile table).
        layout: ``"standard"``, or ``"keras_v2"`` for Keras' ``ResNet50V2/101V2/152V2``
            (pre-activation bottlenecks, see :data:`LAYOUTS`).
    """

    block: str
    preact: bool
    stem: str
    stem_width: int
    stages: tuple[StageSpec, ...]
    depth: int
    family: str
    groups: int = 1
    width_per_group: int = 64
    layout: str = "standard"

    @property
    def num_blocks(self) -> int:
        return sum(stage.num_blocks for stage in self.stages)


#: Where a :class:`NetworkSpec`'s layers differ from the standard (torchvision's) ones.
#: ``"keras_v2"`` is Keras' ``ResNet50V2/101V2/152V2``, so that its weights compute the same
#: thing here: a stage strides in its *last* block, whose shortcut (channels unchanged) then
#: takes every ``stride``-th pixel of the block's raw input (Keras' 1×1 max-pool with stride)
#: instead of projecting; the stem conv, the projection shortcuts and each block's last 1×1
#: conv have biases; the stem max-pool pads with zeros, not −∞ (its input is not ReLU'd, so
#: border values differ); BatchNorm epsilon is Keras' 1.001e-5.
LAYOUTS = ("standard", "keras_v2")
#: Keras' BatchNorm epsilon in its ResNets.
KERAS_BN_EPS = 1.001e-5

# The batch norms whose running statistics checkpointing must not update twice (public classes;
# the lazy ones are not subclasses of the others).
BATCH_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
    nn.SyncBatchNorm,
)


class ResNet(nn.Module):
    """The residual family's one builder: stem → stages of blocks → global pooling → ``fc``.

    Args:
        spec: the architecture.
        num_classes: outputs of ``fc``.
        in_chans: input channels (e.g. 1 for grayscale).
        shortcut: ``"A"``, ``"B"``, ``"C"`` or ``"none"`` (the plain twin).
        gated: highway merge ``T·F(x) + (1−T)·x`` in every block.
        attention: ``None``, ``"se"`` (squeeze-and-excitation) or ``"cbam"`` in every block.
        dropout: dropout probability inside every residual branch (between its convs).
        drop_path: stochastic depth; block ``i`` of ``L`` is dropped with probability
            ``drop_path · (i + 1) / L`` (the linear rule of Huang et al. 2016).
        zero_init_last: start every branch at zero (last BN γ = 0), so blocks start as shortcuts.
        activation_checkpointing: recompute block activations in backward instead of storing
            them; needed to train 1000-layer networks in limited memory.
        shortcut_pad: where option A's zero channels go, ``"back"`` (after the input's) or
            ``"both"`` (half before, half after: the public CIFAR ResNet code's convention).
        name: recorded as ``model.model_name`` (default ``"ResNet-{depth}"``; :func:`create_model`
            passes the registered name).
        model_options: recorded as ``model.model_options`` (default: every option argument
            above, ``shortcut`` … ``shortcut_pad``). :func:`create_model` passes the
            options as given with the name's defaults; each must equal its argument.

    Input ``x: (N, in_chans, H, W)``, output ``(N, num_classes)``. Any ``H, W ≥ 1`` works.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: str = "B",
        gated: bool = False,
        attention: str | None = None,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        zero_init_last: bool = False,
        activation_checkpointing: bool = False,
        shortcut_pad: str = "back",
        *,
        name: str | None = None,
        model_options: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        options = {"shortcut": shortcut, "gated": gated, "attention": attention, "dropout": dropout,
                   "drop_path": drop_path, "zero_init_last": zero_init_last,
                   "activation_checkpointing": activation_checkpointing, "shortcut_pad": shortcut_pad}
        if model_options is not None:
            disagreeing = sorted(k for k, v in model_options.items() if k not in options or options[k] != v)
            if disagreeing:
                raise ValueError(f"model_options disagree with the arguments: {', '.join(disagreeing)}")
            options = dict(model_options)
        self.model_name = f"{type(self).__name__}-{spec.depth}" if name is None else name
        self.model_options = options
        self.spec = spec
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.shortcut_option = shortcut
        self.activation_checkpointing = activation_checkpointing

        self.conv1, self.bn1, self.maxpool = self._make_stem(spec, in_chans)
        if spec.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {spec.layout!r}; layouts are {', '.join(LAYOUTS)}")
        keras_v2 = spec.layout == "keras_v2"
        if keras_v2 and not (spec.preact and spec.block == "bottleneck" and spec.stem == "imagenet"):
            raise ValueError("the keras_v2 layout is for pre-activation ImageNet bottleneck networks")
        # Keras' V2 subsamples where a block changes only the resolution; passed only there, so
        # every other network's blocks keep the default (no subsampling shortcut).
        block_options = {"subsample_shortcut": True} if keras_v2 else {}
        if shortcut_pad != "back":
            block_options["shortcut_pad"] = shortcut_pad

        block_cls = BLOCKS[(spec.block, spec.preact)]
        total_blocks = spec.num_blocks
        block_index = 0
        in_planes = spec.stem_width
        for stage_index, stage in enumerate(spec.stages, start=1):
            blocks = []
            strided_block = stage.num_blocks - 1 if keras_v2 else 0
            for i in range(stage.num_blocks):
                rate = drop_path * (block_index + 1) / total_blocks if drop_path > 0 else 0.0
                blocks.append(
                    block_cls(
                        in_planes, stage.planes, stride=stage.stride if i == strided_block else 1,
                        groups=spec.groups, base_width=spec.width_per_group, dropout=dropout,
                        shortcut=shortcut, gated=gated, attention=attention, drop_path=rate,
                        **block_options,
                    )
                )
                in_planes = stage.planes * block_cls.expansion
                block_index += 1
            self.add_module(f"layer{stage_index}", nn.Sequential(*blocks))
        self.num_features = in_planes
        # Pre-activation nets end their last block on a conv, so they need a final BN-ReLU.
        self.bn_final = nn.BatchNorm2d(in_planes) if spec.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        # num_classes=0: no classifier, forward gives the pooled features (timm's convention).
        self.fc = nn.Linear(in_planes, num_classes) if num_classes > 0 else nn.Identity()
        self.features_only = False
        self.feature_info = FeatureInfo(self._feature_entries(spec, block_cls.expansion),
                                        range(len(spec.stages) + 1))

        self._init_weights(zero_init_last)
        if keras_v2:
            self._use_keras_v2_layers()

    def _use_keras_v2_layers(self) -> None:
        """Keras' V2 biases (zero, as Keras initialises them), stem pool padding and BN epsilon."""
        convs = [self.conv1]
        for block in self.blocks():
            convs.append(block.last_conv())
            if isinstance(block.downsample, nn.Sequential) and isinstance(block.downsample[0], nn.Conv2d):
                convs.append(block.downsample[0])  # a projection (not the subsampling max-pool)
        for conv in convs:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device))
        # Keras pads with zeros, then pools: the same as -inf padding only for non-negative inputs.
        self.maxpool = nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(kernel_size=3, stride=2))
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = KERAS_BN_EPS

    def _feature_entries(self, spec: NetworkSpec, expansion: int) -> list[FeatureEntry]:
        """Stem, then every stage: channels, reduction and the module whose output it is."""
        reduction = 2 if spec.stem == "imagenet" else 1
        entries = [FeatureEntry(spec.stem_width, reduction, "conv1" if spec.preact else "bn1")]
        if spec.stem == "imagenet":
            reduction *= 2  # the max-pool
        for index, stage in enumerate(spec.stages, start=1):
            reduction *= stage.stride
            last = index == len(spec.stages)
            entries.append(FeatureEntry(stage.planes * expansion, reduction,
                                        "bn_final" if last and spec.preact else f"layer{index}"))
        return entries

    # -- heads and feature extraction (timm's names) -------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised classifier for ``num_classes`` (0: none, pooled features out)."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ModelConfigError(f"{self.model_name}: reset_classifier needs num_classes >= 0, got {num_classes!r}")
        if self.features_only:
            raise ModelConfigError(f"{self.model_name}: a features_only model has no classifier to reset")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.fc = nn.Linear(self.num_features, num_classes).to(device) if num_classes > 0 else nn.Identity()

    def as_features(self, out_indices=None) -> "ResNet":
        """Turn this model into a feature extractor (in place): ``forward`` returns the list of the
        feature maps at ``out_indices`` (0 = stem, 1.. = stages; default all); no pooling, no fc."""
        self.feature_info = FeatureInfo(self.feature_info.entries,
                                        check_out_indices(self.model_name, out_indices, len(self.feature_info.entries)))
        self.features_only = True
        self.fc = None
        return self

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps at ``feature_info.out_indices``, unpooled, input side first."""
        wanted = set(self.feature_info.out_indices)
        last = max(wanted)
        outputs = []
        x = self._stem_conv(x)
        if 0 in wanted:
            outputs.append(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        stages = self.stages()
        for index, stage in enumerate(stages, start=1):
            if index > last:
                break  # nothing deeper is asked for
            x = self._run_stage(stage, x)
            if index == len(stages) and self.bn_final is not None:
                x = F.relu(self.bn_final(x))
            if index in wanted:
                outputs.append(x)
        return outputs

    @staticmethod
    def _make_stem(spec: NetworkSpec, in_chans: int):
        if spec.stem == "imagenet":
            conv = nn.Conv2d(in_chans, spec.stem_width, kernel_size=7, stride=2, padding=3, bias=False)
            maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        elif spec.stem == "cifar":
            conv = nn.Conv2d(in_chans, spec.stem_width, kernel_size=3, stride=1, padding=1, bias=False)
            maxpool = None
        else:
            raise ValueError(f"unknown stem {spec.stem!r}")
        # In pre-activation nets the first block normalises its input itself.
        bn = None if spec.preact else nn.BatchNorm2d(spec.stem_width)
        return conv, bn, maxpool

    def _init_weights(self, zero_init_last: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # (Conv biases are left as their modules set them: the highway gate's keeps GATE_BIAS_INIT.)
        if zero_init_last:
            for block in self.blocks():
                block.zero_init_last()

    # -- structure ---------------------------------------------------------------------------
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, len(self.spec.stages) + 1)]

    def blocks(self) -> Iterator[ResidualBlock]:
        for stage in self.stages():
            yield from stage

    def named_blocks(self) -> Iterator[tuple[str, ResidualBlock]]:
        for i, stage in enumerate(self.stages(), start=1):
            for j, block in enumerate(stage):
                yield f"layer{i}.{j}", block

    @property
    def is_plain(self) -> bool:
        return self.shortcut_option == "none"

    # -- forward -----------------------------------------------------------------------------
    def _stem_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The stem before its max-pool: feature level 0."""
        x = self.conv1(x)
        return F.relu(self.bn1(x)) if self.bn1 is not None else x

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_conv(x)
        return self.maxpool(x) if self.maxpool is not None else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W) -> (N, num_features, H', W')``, before pooling."""
        x = self.forward_stem(x)
        for stage in self.stages():
            x = self._run_stage(stage, x)
        if self.bn_final is not None:
            x = F.relu(self.bn_final(x))
        return x

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False, context_fn=_freeze_bn_stats_on_recompute(block))
            return x
        return stage(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify unpooled features (``pre_logits``: pooled features, no fc). A model
        without global pooling (``avgpool`` None: Keras' ``pooling=None``, which
        :func:`reslab.models.convert.from_keras` builds) returns the features as they are."""
        if self.avgpool is None:
            return features
        pooled = torch.flatten(self.avgpool(features), 1)
        return pooled if pre_logits or self.fc is None else self.fc(pooled)

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))


def _freeze_bn_stats_on_recompute(block: nn.Module):
    """Checkpoint context: the backward-time recomputation must not update BN running stats twice.

    Momentum 0 keeps ``running_mean``/``running_var`` as they are, but BN still increments
    ``num_batches_tracked`` (and with ``momentum=None`` would average with it), so the counter
    is restored too. The recomputation runs the same kernels as the forward, which
    non-reentrant checkpointing requires (it checks the saved tensors match).
    """

    @contextlib.contextmanager
    def frozen():
        norms = [m for m in block.modules() if isinstance(m, BATCH_NORMS)]
        saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, (momentum, count) in zip(norms, saved):
                m.momentum = momentum
                if count is not None:
                    m.num_batches_tracked.copy_(count)

    return lambda: (contextlib.nullcontext(), frozen())
