"""Models: blocks, shortcuts, specs, the builder, the registry and the profiler."""

from reslab.models.blocks import (
    SHORTCUT_OPTIONS,
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ResidualBlock,
)
from reslab.models.introspect import (
    blocks_removed,
    named_blocks,
    removable_blocks,
    weight_layers,
)
from reslab.models.network import NetworkSpec, ResNet, StageSpec
from reslab.models.profile import (
    ModelProfile,
    format_table,
    profile_model,
    profile_table,
)
from reslab.models.registry import create_model, list_models, model_info

__all__ = [
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResidualBlock", "SHORTCUT_OPTIONS",
    "NetworkSpec", "ResNet", "StageSpec",
    "create_model", "list_models", "model_info",
    "named_blocks", "weight_layers", "removable_blocks", "blocks_removed",
    "ModelProfile", "profile_model", "profile_table", "format_table",
]
