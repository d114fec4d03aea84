"""What a model reads, and an input of that kind: the one place export, profile and bench ask.

Three kinds of model share the commands that build an input for them:

* **images** (ResNets, DenseNets, U-Nets): float32 ``(N, C, H, W)``; the *size* is the side ``H = W``
  or the pair ``(H, W)``.
* **vectors** (``resmlp{d}``, ``plain_mlp{d}``): the same images, which the model flattens to
  ``C·H·W`` features, so ``(H, W)`` must be the ``image_size`` it was built with and ``C`` its
  ``in_chans``; the default size is that ``image_size``.
* **tokens** (transformers, LSTMs, GRUs): int64 ``(N, T)`` character ids below the vocabulary
  (the head's size); the *size* is the sequence length ``T``, by default the model's context
  (its longest input) where it has one, else the registry's default.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from reslab.errors import ConfigError, ModelConfigError

IMAGES, VECTORS, TOKENS = "images", "vectors", "tokens"


def input_kind(model: nn.Module) -> str:
    """:data:`IMAGES`, :data:`VECTORS` or :data:`TOKENS`: what ``model`` reads, as its registry family says."""
    return kind_of_name(getattr(model, "model_name", None))


def kind_of_name(name: str | None) -> str:
    """:func:`input_kind` of a model name, before anything is built (unknown names read images)."""
    from reslab.models.registry import model_info  # noqa: PLC0415 - the registry imports every family

    if not name:
        return IMAGES
    try:
        family = model_info(name).family
    except ModelConfigError:
        return IMAGES
    return {"sequence": TOKENS, "vector": VECTORS}.get(family, IMAGES)


def is_recurrent(model: nn.Module) -> bool:
    """Whether the model holds an LSTM/GRU/RNN layer (torch.export fixes their sequence length)."""
    return any(isinstance(module, nn.RNNBase) for module in model.modules())


def context_of(model: nn.Module) -> int | None:
    """The longest token sequence the model takes (a transformer's learned positions), or None (no limit)."""
    context = getattr(model, "context", None)
    return int(context) if isinstance(context, int) else None


def vocabulary(model: nn.Module) -> int:
    """How many token ids a token model embeds."""
    embedding = getattr(model, "token_embedding", None)
    if isinstance(embedding, nn.Embedding):
        return int(embedding.num_embeddings)
    raise ModelConfigError(f"{getattr(model, 'model_name', type(model).__name__)} has no token_embedding to size "
                           "token inputs from")


def default_size(model: nn.Module, name: str | None = None) -> int | tuple[int, int] | None:
    """The size a model reads when none is given, where the model itself says it: a token model's
    context (or the registry's default length), a vector model's ``image_size``; None for image
    models (their family decides: :func:`reslab.models.export.default_input_size`)."""
    kind = input_kind(model) if getattr(model, "model_name", None) else kind_of_name(name)
    if kind == TOKENS:
        context = context_of(model)
        if context is not None:
            return context
        from reslab.models.registry import model_info  # noqa: PLC0415

        return int(model_info(name or model.model_name).default_input_size)
    if kind == VECTORS:
        size = (getattr(model, "model_options", None) or {}).get("image_size")
        if size:
            height, width = (size, size) if isinstance(size, int) else tuple(size)
            return int(height) if height == width else (int(height), int(width))
    return None


def sequence_length(model: nn.Module, size) -> int:
    """``size`` as a token model's sequence length T (a positive integer)."""
    if isinstance(size, (tuple, list)) and len(size) == 1:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{getattr(model, 'model_name', 'the model')} reads tokens (N, T): its input size is the "
                          f"sequence length T, a positive integer, got {size!r}")
    return int(size)


def image_hw(size) -> tuple[int, int]:
    """``size`` as ``(H, W)``: an integer N (N×N) or a pair."""
    if isinstance(size, int) and not isinstance(size, bool):
        sides: Sequence = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        sides = tuple(size)
    else:
        raise ConfigError(f"input_size must be an integer N (N×N images) or a pair (H, W), got {size!r}")
    if not all(isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in sides):
        raise ConfigError(f"input_size must hold positive integers, got {size!r}")
    return int(sides[0]), int(sides[1])


def example_input(model: nn.Module, size, in_chans: int | None = None, batch: int = 2,
                  generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An input ``model`` reads: zeros (to trace with) or, with a ``generator``, random ones (to
    check with): token ids uniform over the vocabulary, images standard normal.

    ``in_chans`` is refused for a token model (tokens have no channels)."""
    if input_kind(model) == TOKENS:
        if in_chans is not None:
            raise ConfigError(f"{model.model_name} reads tokens (N, T), which have no channels; in_chans is for "
                              "image and vector models")
        length = sequence_length(model, size)
        if generator is None:
            return torch.zeros(batch, length, dtype=torch.int64)
        return torch.randint(0, vocabulary(model), (batch, length), generator=generator)
    height, width = image_hw(size)
    shape = (batch, in_chans or getattr(model, "in_chans", None) or 3, height, width)
    return torch.randn(*shape, generator=generator, dtype=dtype) if generator is not None \
        else torch.zeros(*shape, dtype=dtype)


def describe_input(model: nn.Module, size, in_chans: int | None = None) -> str:
    """The input a file exported at ``size`` takes, in words (what ``reslab export`` prints)."""
    if input_kind(model) == TOKENS:
        context = context_of(model)
        limit = f" up to {context}" if context is not None else ""
        return (f"(N, T) int64 token ids below {vocabulary(model)}, traced at T = {sequence_length(model, size)}; "
                f"dynamic batch N and length T{limit}")
    height, width = image_hw(size)
    chans = in_chans or getattr(model, "in_chans", None) or 3
    flat = f" (flattened to {chans * height * width} features)" if input_kind(model) == VECTORS else ""
    return f"(N, {chans}, {height}, {width}) normalised images{flat}, dynamic batch N"


__all__ = ["IMAGES", "TOKENS", "VECTORS", "context_of", "default_size", "describe_input", "example_input",
           "image_hw", "input_kind", "is_recurrent", "kind_of_name", "sequence_length", "vocabulary"]
