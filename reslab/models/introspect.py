"""Look inside a network: its blocks, its hook points, its weight layers; remove blocks."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

from torch import nn

from reslab.models.blocks import ResidualBlock
from reslab.models.residual import Residual

# Submodules that are not on the main path: shortcut projections, highway gates, attention.
_OFF_MAIN_PATH = ("downsample", "gate", "attention")


def named_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock | Residual]]:
    """``(qualified_name, block)`` for every residual (or plain) block, in forward order: the CNN
    blocks and the :class:`~reslab.models.residual.Residual` units of the other families."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, (ResidualBlock, Residual))]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv and linear layers on the main path, in order: the "depth" in a model's name.

    Shortcut projections, highway gates and attention layers are not counted, as in He et al.
    """
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not any(part in _OFF_MAIN_PATH for part in name.split(".")):
            layers.append((name, module))
    return layers


def removable_blocks(model: nn.Module) -> list[str]:
    """Names of blocks that can be removed at test time.

    Every residual block (its shortcut remains); for plain nets, the blocks that keep the shape.
    """
    return [name for name, block in named_blocks(model) if block.residual or not block.changes_shape]


@contextlib.contextmanager
def blocks_removed(model: nn.Module, names: Iterable[str]) -> Iterator[nn.Module]:
    """Within the context, the named blocks pass only their shortcut (lesion study)."""
    blocks = dict(named_blocks(model))
    names = list(names)
    missing = [n for n in names if n not in blocks]
    if missing:
        raise KeyError(f"no block named {missing[0]!r}; blocks are {', '.join(list(blocks)[:6])}, ...")
    not_removable = [n for n in names if not (blocks[n].residual or not blocks[n].changes_shape)]
    if not_removable:
        raise ValueError(f"block {not_removable[0]!r} changes shape and has no shortcut; it cannot be removed")
    try:
        for n in names:
            blocks[n].branch_enabled = False
        yield model
    finally:
        for n in names:
            blocks[n].branch_enabled = True
