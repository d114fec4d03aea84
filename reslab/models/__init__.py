"""Models: blocks, shortcuts, specs, the builder, the registry and the profiler.

A model family outside the ResNet spec is one module that calls
:func:`~reslab.models.registry.register_family` when it loads; this package imports each such
module, so ``create_model`` knows every family once ``reslab.models`` is imported.
"""

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
from reslab.models.registry import create_model, list_models, model_info, model_families, register_family

# Each family outside the ResNet spec registers itself when its module loads; importing them here
# registers them all with the package (the registry itself never imports them).
from reslab.models import transformer, recurrent, mlp, densenet, unet  # noqa: E402,F401,I001 - this order is the listing's

__all__ = [
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResidualBlock", "SHORTCUT_OPTIONS",
    "NetworkSpec", "ResNet", "StageSpec",
    "create_model", "list_models", "model_info", "model_families", "register_family",
    "named_blocks", "weight_layers", "removable_blocks", "blocks_removed",
    "ModelProfile", "profile_model", "profile_table", "format_table",
]
