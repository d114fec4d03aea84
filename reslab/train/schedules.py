"""Learning-rate schedules as pure functions of the iteration.

``lr_at(t)`` is the learning rate of optimizer step ``t`` (0-based: ``t`` steps were taken
before it). Because the value depends on ``t`` alone, the scheduler's whole state is the
iteration counter, which makes resuming exact and testing trivial.

Schedules (``T`` = total iterations, ``lr`` = the base/peak rate):

* ``constant``: ``lr``.
* ``step``: ``lr · gamma^k`` where ``k`` = number of milestones ``≤ t`` (He et al. 2015 divide
  by 10 at 32k and 48k: steps 32000.. use 0.01).
* ``cosine``: ``min_lr + (lr − min_lr) · (1 + cos(π t / T)) / 2``; ``lr_at(T) = min_lr``.
* ``onecycle``: linear from ``lr · start_factor`` up to ``lr`` at ``t = peak_at · T``, then
  linear down to ``min_lr`` at ``T`` (the piecewise-linear one-cycle of Smith & Topin 2017, as
  used by fast CIFAR-10 trainers).

Warm-up replaces the first ``W`` iterations of any of them: ``constant`` mode holds
``warmup_lr`` (He et al.'s 0.01 for ResNet-110, then "go back to 0.1"); ``linear`` mode ramps
from ``warmup_lr`` to the main schedule's value at ``W``. Milestones stay absolute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule over ``total`` iterations (all lengths in iterations)."""

    kind: str
    lr: float
    total: int
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0
    peak_at: float = 0.25
    start_factor: float = 0.1
    warmup: int = 0
    warmup_lr: float = 0.0
    warmup_mode: str = "linear"
    notes: list[str] = field(default_factory=list, compare=False)

    def main(self, t: int) -> float:
        """The schedule without warm-up, at iteration ``t``."""
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            passed = sum(1 for m in self.milestones if t >= m)
            return self.lr * self.gamma ** passed
        progress = min(max(t / max(self.total, 1), 0.0), 1.0)
        if self.kind == "cosine":
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "onecycle":
            peak = self.peak_at * self.total
            start = self.lr * self.start_factor
            if t < peak:
                return start + (self.lr - start) * (t / peak)
            span = max(self.total - peak, 1e-12)
            return self.lr + (self.min_lr - self.lr) * min((t - peak) / span, 1.0)
        raise ValueError(f"unknown schedule {self.kind!r}")

    def lr_at(self, t: int) -> float:
        """Learning rate of optimizer step ``t`` (0-based), warm-up included."""
        if t < self.warmup:
            if self.warmup_mode == "constant":
                return self.warmup_lr
            target = self.main(self.warmup)
            return self.warmup_lr + (target - self.warmup_lr) * (t / self.warmup)
        return self.main(t)


def build_schedule(config, steps_per_epoch: int, total_iterations: int, depth: int) -> LRSchedule:
    """The schedule a :class:`~reslab.train.config.TrainConfig` asks for.

    steps_per_epoch: optimizer steps per epoch (to turn epoch units into iterations).
    depth: the model's weight layers, compared with ``warmup_min_depth`` (He et al. warm up
        only ResNet-110 and deeper).
    """
    notes: list[str] = []
    unit = steps_per_epoch if config.milestone_unit == "epochs" else 1
    milestones = tuple(int(m) * unit for m in config.milestones)
    if config.schedule == "step" and any(m >= total_iterations for m in milestones):
        late = [m for m in milestones if m >= total_iterations]
        notes.append(f"milestones {late} (iterations) lie at or beyond the end of training "
                     f"({total_iterations} iterations); lr is not decayed there")
    if config.schedule != "step" and milestones:
        notes.append(f"milestones {list(config.milestones)} are ignored: only the step schedule uses them "
                     f"(this run uses {config.schedule})")
    if config.schedule not in ("cosine", "onecycle") and config.min_lr:
        notes.append(f"min_lr {config.min_lr} is ignored: only cosine and one-cycle end at it "
                     f"(this run uses {config.schedule})")
    warmup = int(config.warmup) * (steps_per_epoch if config.warmup_unit == "epochs" else 1)
    if warmup and depth < config.warmup_min_depth:
        warmup = 0
    elif warmup and config.warmup_min_depth:
        notes.append(f"warm-up: {warmup} iterations at lr {config.warmup_lr} "
                     f"(depth {depth} >= {config.warmup_min_depth})")
    if warmup >= total_iterations > 0:
        notes.append(f"the warm-up ({warmup} iterations) is as long as the run or longer ({total_iterations} "
                     f"iterations): lr stays in the warm-up throughout (lr {config.warmup_lr}"
                     + (", rising linearly" if config.warmup_mode == "linear" else "") + ") and never reaches "
                     f"{config.lr}; shorten --set warmup=... or train longer")
    return LRSchedule(
        kind=config.schedule, lr=config.lr, total=total_iterations, milestones=milestones,
        gamma=config.gamma, min_lr=config.min_lr, peak_at=config.onecycle_peak_at,
        start_factor=config.onecycle_start_factor, warmup=warmup, warmup_lr=config.warmup_lr,
        warmup_mode=config.warmup_mode, notes=notes,
    )
