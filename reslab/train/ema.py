"""Exponential moving average (EMA) of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class ModelEMA:
    """Keeps ``ema = d·ema + (1−d)·model`` for every floating parameter and buffer.

    The decay warms up as ``d_n = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average is not dominated by the random initialisation in short runs (a 0.999 EMA would
    otherwise need thousands of steps to forget it). BN's running statistics are averaged like
    the weights; integer buffers (``num_batches_tracked``) are copied.

    ``ema.module`` is an ordinary model in eval mode; evaluate it like any other.

    Each step is :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`'s update (``lerp`` with
    weight ``1 − d``, one fused call over all tensors). :class:`~torch.optim.swa_utils.AveragedModel`
    itself is not used: its decay is fixed, its first update copies instead of averaging, it
    would average ``num_batches_tracked`` as a float, and its state (``module.`` prefix,
    ``n_averaged``) would change ``ema.safetensors`` and the resume state.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.updates = 0
        self._cache: tuple | None = None

    def _pairs(self, model: nn.Module):
        # state_dict() values are detached views sharing storage with the parameters, and the
        # optimizer updates those in place, so the pairing can be built once per model.
        if self._cache is not None and self._cache[0] is model:
            return self._cache[1]
        ema_state = self.module.state_dict()
        model_state = model.state_dict()
        floats_ema, floats_model, others = [], [], []
        for key, value in ema_state.items():
            source = model_state[key]
            if value.dtype.is_floating_point:
                floats_ema.append(value)
                floats_model.append(source.detach())
            else:
                others.append((value, source))
        self._cache = (model, (floats_ema, floats_model, others))
        return floats_ema, floats_model, others

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture, unwrapped) into the average."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats_ema, floats_model, others = self._pairs(model)
        if floats_ema:
            # swa_utils' EMA step: ema ← lerp(ema, model, 1 − d) over all tensors in one fused (foreach) call.
            get_ema_multi_avg_fn(decay)(floats_ema, floats_model, None)
        for target, source in others:
            target.copy_(source)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.module.load_state_dict(state["weights"])  # copies in place: the cached pairing stays valid
