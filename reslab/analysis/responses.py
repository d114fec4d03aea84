"""Layer responses: how large each block's residual function F(x) is (He et al. 2015, Fig. 7).

The response of a block is its branch output F(x) — after the branch's last BN (and attention),
before the addition — seen by a forward hook on ``block.branch_output``. For each block we take
the standard deviation of every channel over samples and positions, then the mean over
channels. He et al. found residual functions respond less than the layers of plain nets, and
less in deeper residual nets: the blocks learn small corrections to the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from reslab.analysis.common import Result, Target, batches, model_kind
from reslab.errors import AnalysisError
from reslab.models import named_blocks
from reslab.settings import Settings, setting


@dataclass
class BlockResponses:
    """The response (std of F(x)) of every block of one model, in forward order."""

    label: str
    model: str
    kind: str
    checkpoint: str
    blocks: list[str]
    std: list[float]              # mean over channels of the per-channel std over (N, H, W)

    @property
    def sorted_std(self) -> list[float]:
        """Responses sorted from largest to smallest (the right panel of He et al., Fig. 7)."""
        return sorted(self.std, reverse=True)


@dataclass
class ResponsesResult(Result):
    """Everything ``reslab analyze responses`` measures (saved as ``responses.json``)."""

    analysis: ClassVar[str] = "responses"
    target: dict[str, Any]
    series: list[BlockResponses]
    settings: dict[str, Any] = field(default_factory=dict)


class _RunningChannelStats:
    """Per-channel count, sum and sum of squares in float64, over batches."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None

    def update(self, out: torch.Tensor) -> None:
        # out: (N, C, H, W) or (N, C), channels in dim 1; or a sequence layer's (N, T, D), whose
        # channels (features) are last.
        out = out.detach().double()
        if out.ndim == 3:
            out = out.transpose(1, 2)
        values = out.transpose(0, 1).reshape(out.shape[1], -1)
        if self.total is None:
            self.total = torch.zeros(values.shape[0], dtype=torch.float64, device=values.device)
            self.total_sq = torch.zeros_like(self.total)
        self.total += values.sum(dim=1)
        self.total_sq += values.square().sum(dim=1)
        self.count += values.shape[1]

    def mean_std(self) -> float:
        if self.total is None or self.count == 0:
            return float("nan")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp_min(0.0)
        return float(var.sqrt().mean())


def block_responses(
    model: nn.Module,
    x: torch.Tensor,
    *,
    label: str | None = None,
    checkpoint: str = "init",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> BlockResponses:
    """Std of every block's branch output F(x) over the inputs ``x: (N, C, H, W)``, in eval mode."""

    blocks = named_blocks(model)
    if not blocks:
        raise AnalysisError(f"{type(model).__name__} has no residual blocks whose responses could be measured")
    stats = {name: _RunningChannelStats() for name, _ in blocks}
    handles = [block.branch_output.register_forward_hook(lambda _m, _i, out, s=stats[name]: s.update(out))
               for name, block in blocks]
    was_training = model.training
    original_device = next(model.parameters()).device
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for xb, _ in batches(x, None, batch_size, device):
                model(xb)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        model.to(original_device)
    name = str(getattr(model, "model_name", type(model).__name__))
    return BlockResponses(label=label or name, model=name, kind=model_kind(model), checkpoint=checkpoint,
                          blocks=[n for n, _ in blocks], std=[stats[n].mean_std() for n, _ in blocks])


@dataclass(frozen=True)
class ResponsesSettings(Settings):
    """The options of :func:`analyze_responses` and ``reslab analyze responses``, with their one default."""

    batch_size: int = setting(256, "images per forward pass", minimum=1, cli=False)  # a shared target argument
    device: str = setting("cpu", "where to compute", cli=False)
    seed: int = setting(0, "seed of the sample choice (recorded)", minimum=0, cli=False)


def analyze_responses(targets: list[Target], x: torch.Tensor,
                      settings: ResponsesSettings | Mapping[str, Any] | None = None, *, describe: dict[str, Any],
                      **changes: Any) -> ResponsesResult:
    """:func:`block_responses` of every target on the same inputs ``x: (N, C, H, W)``."""
    s = ResponsesSettings.of(settings, **changes)
    batch_size, device, seed = s.batch_size, s.device, s.seed
    series = [block_responses(t.model, x, label=t.label, checkpoint=t.checkpoint, batch_size=batch_size,
                              device=device) for t in targets]
    settings = {"samples": int(x.shape[0]), "split": "test", "mode": "eval (BN running statistics)",
                "statistic": "mean over channels of the std over samples and positions of F(x)",
                "batch_size": batch_size, "seed": seed}
    return ResponsesResult(target=describe, series=series, settings=settings)
