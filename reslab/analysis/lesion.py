"""Lesion study: the test error after removing blocks at test time (Veit et al. 2016).

Removing a residual block drops its branch and keeps its shortcut, so the signal still flows;
removing a plain block (possible only where it keeps the shape) turns it into the identity.
Veit et al. found that deleting any single block of a residual net barely hurts it, and the
error grows smoothly with the number of blocks removed — residual nets behave like ensembles
of many shallower paths — while a plain net collapses when any layer is removed.

Two measurements: the error with each removable block removed alone, and the mean error with k
random removable blocks removed (k = 1..K, ``draws`` random sets each, or every set when there
are fewer).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from reslab.analysis.common import Result, Target, batches, model_kind
from reslab.errors import AnalysisError
from reslab.models import blocks_removed, named_blocks, removable_blocks
from reslab.settings import Settings, setting
from reslab.train.evaluation import flat_outputs


@dataclass
class LesionSeries:
    """Lesion results of one model.

    blocks lists every block in forward order; single_block_error[i] is the error with block i
    removed alone, or ``None`` where block i cannot be removed (a plain block changing shape).
    k_mean_error[j] is the mean error over the random sets of k[j] removed blocks.
    """

    label: str
    model: str
    kind: str
    checkpoint: str
    blocks: list[str]
    removable: list[str]
    base_error: float
    single_block_error: list[float | None]
    k: list[int] = field(default_factory=list)
    k_mean_error: list[float] = field(default_factory=list)
    k_std_error: list[float] = field(default_factory=list)
    k_sets: list[int] = field(default_factory=list)       # how many sets were evaluated for each k


@dataclass
class LesionResult(Result):
    """Everything ``reslab analyze lesion`` measures (saved as ``lesion.json``)."""

    analysis: ClassVar[str] = "lesion"
    target: dict[str, Any]
    series: list[LesionSeries]
    settings: dict[str, Any] = field(default_factory=dict)


def error_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
               device: torch.device | str = "cpu") -> float:
    """Top-1 error (fraction in [0, 1]) of ``model`` in its current mode on ``(x, y)``: of images, or
    of pixels (masks y), or of characters (token windows)."""
    wrong = 0
    with torch.inference_mode():
        for xb, yb in batches(x, y, batch_size, device):
            logits, labels = flat_outputs(model(xb), yb)
            wrong += int((logits.argmax(dim=1) != labels).sum())
    return wrong / max(1, y.numel())


def lesion_study(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label: str | None = None,
    checkpoint: str = "init",
    max_removed: int | None = None,
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> LesionSeries:
    """Test error of ``model`` on ``(x: (N, C, H, W), y: (N,))`` with blocks removed, in eval mode.

    max_removed: the largest k for the random-set curve (default: every removable block, at most
        20); 0 skips that curve.
    draws: random sets per k; when there are at most ``draws`` sets of size k, each is used once.
        k = 1 always uses every removable block (the exact single-block errors).
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise AnalysisError(f"need as many labels as inputs (and at least one), got {x.shape[0]} and {y.shape[0]}")
    if draws < 1:
        raise AnalysisError(f"--draws must be at least 1, got {draws}")
    names = [name for name, _ in named_blocks(model)]
    removable = removable_blocks(model)
    if not removable:
        raise AnalysisError(f"{getattr(model, 'model_name', type(model).__name__)} has no block that can be "
                            "removed (a plain net can lose only the blocks that keep their input's shape)")
    if max_removed is None:
        max_removed = min(len(removable), 20)
    if max_removed < 0 or max_removed > len(removable):
        raise AnalysisError(f"--max-removed must lie in 0..{len(removable)} (the removable blocks), got {max_removed}")

    was_training = model.training
    original_device = next(model.parameters()).device
    model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    plan = [(k, _sets_of_size(len(removable), k, draws, generator)) for k in range(1, max_removed + 1)]
    # k = 1 is exact: every single block is removed once below, so its point is their mean, not a
    # sample of --draws of them (the random sets of k = 1 are still drawn, so k ≥ 2 keep their sets).
    total = 1 + len(removable) + sum(len(sets) for k, sets in plan if k > 1)
    bar = tqdm(total=total, desc=f"lesion {label or ''}".strip(), unit="eval", disable=not progress)

    def error_without(block_names) -> float:
        with blocks_removed(model, block_names):
            error = error_rate(model, x, y, batch_size, device)
        bar.update(1)
        return error

    try:
        base = error_without([])
        single = {name: error_without([name]) for name in removable}
        k_mean, k_std, k_count = [], [], []
        for k, sets in plan:
            errors = ([single[name] for name in removable] if k == 1
                      else [error_without([removable[i] for i in chosen]) for chosen in sets])
            mean = sum(errors) / len(errors)
            k_mean.append(mean)
            k_std.append(math.sqrt(sum((e - mean) ** 2 for e in errors) / len(errors)))
            k_count.append(len(errors))
    finally:
        bar.close()
        model.train(was_training)
        model.to(original_device)
    name = str(getattr(model, "model_name", type(model).__name__))
    return LesionSeries(
        label=label or name, model=name, kind=model_kind(model), checkpoint=checkpoint, blocks=names,
        removable=list(removable), base_error=base, single_block_error=[single.get(n) for n in names],
        k=[k for k, _ in plan], k_mean_error=k_mean, k_std_error=k_std, k_sets=k_count,
    )


def _sets_of_size(n: int, k: int, draws: int, generator: torch.Generator) -> list[tuple[int, ...]]:
    """``draws`` random k-subsets of range(n), or all of them when there are at most ``draws``."""
    if math.comb(n, k) <= draws:
        return list(itertools.combinations(range(n), k))
    return [tuple(sorted(torch.randperm(n, generator=generator)[:k].tolist())) for _ in range(draws)]


@dataclass(frozen=True)
class LesionSettings(Settings):
    """The options of :func:`analyze_lesion` and ``reslab analyze lesion``, with their one default."""

    max_removed: int | None = setting(None, "largest number of blocks removed at once (default: all removable, at "
                                            "most 20; 0 skips the k-blocks curve)", minimum=0, metavar="K")
    draws: int = setting(10, "random sets of blocks per k (all sets when there are fewer)", minimum=1)
    seed: int = setting(0, "seed of the random sets", minimum=0, cli=False)  # the shared --seed
    batch_size: int = setting(500, "images per forward pass", minimum=1, cli=False)  # a shared target argument
    device: str = setting("cpu", "where to compute", cli=False)
    progress: bool = setting(False, "a progress bar on stderr", cli=False)


def analyze_lesion(targets: list[Target], x: torch.Tensor, y: torch.Tensor,
                   settings: LesionSettings | Mapping[str, Any] | None = None, *, describe: dict[str, Any],
                   **changes: Any) -> LesionResult:
    """:func:`lesion_study` of every target on the same test samples (``settings``/``changes``: a
    :class:`LesionSettings` and any of its fields as keywords)."""
    s = LesionSettings.of(settings, **changes)
    max_removed, draws, seed, batch_size, device, progress = (s.max_removed, s.draws, s.seed, s.batch_size,
                                                              s.device, s.progress)
    series = []
    for target in targets:
        limit = max_removed
        if limit is not None:
            # A plain twin has fewer removable blocks than its residual net: cap per model.

            limit = min(limit, len(removable_blocks(target.model)))
        series.append(lesion_study(target.model, x, y, label=target.label, checkpoint=target.checkpoint,
                                   max_removed=limit, draws=draws, seed=seed, batch_size=batch_size,
                                   device=device, progress=progress))
    task = getattr(targets[0], "task", "classify") if targets else "classify"
    settings = {"samples": int(x.shape[0]), "split": "test", "mode": "eval (BN running statistics)",
                "error_of": {"segment": "pixels", "language-model": "next characters"}.get(task, "images"),
                "max_removed": max_removed, "draws": draws, "seed": seed,
                "removal": "residual block: branch dropped, shortcut kept; plain block: identity (same-shape blocks only)"}
    return LesionResult(target=describe, series=series, settings=settings)
