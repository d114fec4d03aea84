"""How a model family outside the ResNet spec (transformers, recurrent stacks, MLPs, DenseNet)
joins the registry: a name pattern and a builder.

A family module (``reslab/models/transformer.py``, ...) passes its families to
:func:`reslab.models.registry.register_family` when it loads, so ``create_model("transformer8")``
and ``create_model("resnet56")`` are one call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelFamily:
    """Names of one form, e.g. ``transformer{d}``, and how to build them.

    ``build(name, *numbers, num_classes=K, in_chans=C, **options)`` gets the integers the
    pattern captured (e.g. the depth) and returns a module that sets ``model_name``,
    ``model_options`` (the options it was built with, defaults filled in) and ``is_plain``.
    ``family`` says what input the model takes: ``"sequence"`` (int64 tokens ``(B, T)`` →
    logits ``(B, T, V)``), ``"vector"`` (images flattened to vectors) or ``"cifar"`` (images).
    ``examples`` are the names ``list_models`` shows.
    """

    template: str
    pattern: re.Pattern
    family: str
    description: str
    build: Callable[..., nn.Module]
    default_num_classes: int = 10
    default_input_size: int = 32
    examples: tuple[str, ...] = field(default=())

    def numbers(self, name: str) -> tuple[int, ...] | None:
        match = self.pattern.fullmatch(name)
        return None if match is None else tuple(int(g) for g in match.groups())
