"""The optimizer: SGD with momentum/Nesterov and weight decay, optionally not on BN and bias."""

from __future__ import annotations

import torch
from torch import nn

from reslab.models.network import BATCH_NORMS

# Normalisation layers whose affine parameters get no weight decay with ``no_wd_on_bn_and_bias``
# (public classes only; torch's private base class of BN and instance norm would be shorter).
_NORM_TYPES = (*BATCH_NORMS, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, no_wd_on_bn_and_bias: bool) -> list[dict]:
    """Parameter groups for the optimizer.

    With ``no_wd_on_bn_and_bias`` the weights and biases of normalisation layers and every
    ``bias`` go in a group with ``weight_decay=0``: decaying BN's scale only fights the next
    layer's weights (the function is invariant to it) and biases do not overfit — a common
    improvement for short schedules. Otherwise one group, decayed as He et al. did.
    """
    if not no_wd_on_bn_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay,
                 "name": "all"}]
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, _NORM_TYPES) or name == "bias":
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def with_head_lr(groups: list[dict], model: nn.Module, head: str, scale: float) -> list[dict]:
    """Split each group into body and head (module ``head``) parameters; the head's get ``lr_scale``.

    The schedule sets every group's lr to ``lr_at(t) * lr_scale``, so a fine-tuned head keeps its
    own peak (``head_lr``) under the same warm-up and decay as the body.
    """
    head_ids = {id(p) for p in model.get_submodule(head).parameters()}
    out = []
    for group in groups:
        body = [p for p in group["params"] if id(p) not in head_ids]
        tail = [p for p in group["params"] if id(p) in head_ids]
        if body:
            out.append({**group, "params": body})
        if tail:
            out.append({**group, "params": tail, "name": f"head_{group['name']}", "lr_scale": scale})
    return out


def build_optimizer(model: nn.Module, config, head: str | None = None) -> torch.optim.Optimizer:
    """SGD for ``model`` with the config's lr, momentum, Nesterov and weight-decay settings, or
    AdamW (``optimizer = "adamw"``: betas 0.9/0.99, decoupled weight decay) for the sequence models.

    head: the classifier's module name when the config gives the head its own lr (``head_lr``).
    """
    groups = param_groups(model, config.weight_decay, config.no_wd_on_bn_and_bias)
    if head is not None and getattr(config, "head_lr", 0.0):
        groups = with_head_lr(groups, model, head, config.head_lr / config.lr)
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group["lr"] = config.lr * group["lr_scale"]
    if getattr(config, "optimizer", "sgd") == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at ``lr`` times its ``lr_scale`` (1 except a fine-tuned head with ``head_lr``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
