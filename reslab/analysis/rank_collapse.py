"""Rank collapse (Dong et al. 2021): how close a layer's token representations are to "all tokens equal".

For a sequence's representation X (T tokens × D), the nearest rank-1 matrix of the form 1·xᵀ in
the Frobenius norm has x = the mean token, so ``res(X) = ‖X − 1·x̄ᵀ‖_F / ‖X‖_F`` is 1 when the
tokens are orthogonal-ish and 0 when every token carries the same vector. Pure self-attention
drives it to 0 doubly exponentially with depth; skip connections keep it away from 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from reslab.errors import AnalysisError
from reslab.store.results import Result


@dataclass
class RankCollapseResult(Result):
    """``relative_residual[i]`` is the batch-mean res(X) of layer ``layers[i]`` (0 = the embeddings)."""

    analysis: ClassVar[str] = "rank_collapse"

    model: str
    layers: list[int]
    relative_residual: list[float]


def relative_residual(x: torch.Tensor) -> torch.Tensor:
    """‖X − 1·x̄ᵀ‖_F / ‖X‖_F for every sequence of ``x`` (B, T, D): a (B,) tensor."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)


@torch.no_grad()
def rank_collapse(model: nn.Module, tokens: torch.Tensor) -> RankCollapseResult:
    """The batch-mean relative residual at every layer (0 = the embeddings) of a sequence model."""
    if not hasattr(model, "layer_outputs"):
        raise AnalysisError(f"rank collapse needs a sequence model with layer_outputs() (transformer{{d}}, "
                            f"lstm{{d}}, ...), got {type(model).__name__}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise AnalysisError(f"rank collapse takes int64 tokens of shape (B, T), got "
                            f"{getattr(tokens, 'dtype', type(tokens).__name__)} {tuple(getattr(tokens, 'shape', ()))}")
    if tokens.shape[1] < 2:
        raise AnalysisError("rank collapse needs sequences of at least 2 tokens (one token is always rank 1)")
    was_training = model.training
    model.eval()
    try:
        outputs = model.layer_outputs(tokens)
    finally:
        model.train(was_training)
    values = [float(relative_residual(out.float()).mean()) for out in outputs]
    return RankCollapseResult(getattr(model, "model_name", type(model).__name__), list(range(len(values))), values)
