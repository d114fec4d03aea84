"""MLPs on images flattened to vectors (the digits as 64-d vectors), residual or plain.

``resmlp{d}``/``plain_mlp{d}`` have ``d`` Linear layers on the main path (what
:func:`reslab.models.weight_layers` counts)::

    flatten → Linear(C·H·W → width)                                  input layer
            → d − 2 × Residual([BatchNorm1d →] activation → Linear(width → width))   hidden units
            → [BatchNorm1d →] activation → Linear(width → num_classes)            output layer

The hidden units are in pre-activation order (He et al. 2016, "Identity mappings"): the branch
normalises and activates its input, then applies its Linear, so what it adds to the stream has
mean zero. (A branch ending in the activation, Linear → BN → ReLU, adds a positive ReLU mean at
every unit: at depth 50 the stream's mean is ~20× its initial scale and the first loss ~26 nats.)
The plain twin ``plain_mlp{d}`` is then exactly the textbook stack Linear → BN → act → Linear …,
with norm ``"none"`` Linear → act → Linear … — the classic vanishing-gradient setting when the
activation saturates. ``branch_output`` sees each unit's Linear output.

Initialisation: He (kaiming normal, fan-in) for ReLU, Xavier (normal) for tanh and sigmoid; biases
zero; Linear layers followed by BN have no bias. Without BN, a sum of d − 2 branches at He
initialisation would double the stream's variance at every unit, so residual branches without
BN start with their weights scaled by 1/√(d − 2), as Fixup (Zhang et al. 2019) and SkipInit (De &
Smith 2020) do for unnormalised residual nets; the plain twin keeps He/Xavier initialisation,
which is right for a plain stack.

Options: ``width`` (64), ``norm`` ("batch" | "none"), ``activation`` ("relu" | "tanh" |
"sigmoid"), ``dropout`` (on each branch's output, 0.0), ``image_size`` ((H, W), default (8, 8);
in_features = in_chans·H·W).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from reslab.errors import ModelConfigError
from reslab.models.family import ModelFamily
from reslab.models.registry import register_family
from reslab.models.residual import Residual, check_choice, check_positive, check_probability

DEFAULTS = {"width": 64, "norm": "batch", "activation": "relu", "dropout": 0.0, "image_size": (8, 8)}
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _preactivation(width: int, norm: str, activation: str) -> list[nn.Module]:
    return ([nn.BatchNorm1d(width)] if norm == "batch" else []) + [ACTIVATIONS[activation]()]


def _hidden(width: int, norm: str, activation: str) -> nn.Sequential:
    """One hidden unit's branch: [BN →] activation → Linear (pre-activation order)."""
    return nn.Sequential(*_preactivation(width, norm, activation), nn.Linear(width, width))


class MLP(nn.Module):
    """``d`` Linear layers: input, ``d − 2`` (residual or plain) hidden units, output (see the module docstring)."""

    def __init__(self, in_features: int, num_classes: int, depth: int, *, width: int = 64, norm: str = "batch",
                 activation: str = "relu", dropout: float = 0.0, merge: str = "sum") -> None:
        super().__init__()
        self.merge, self.in_features = merge, in_features
        self.input = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width))
        self.units = nn.Sequential(*(Residual(_hidden(width, norm, activation), width, merge=merge, dropout=dropout)
                                     for _ in range(depth - 2)))
        self.final_activation = nn.Sequential(*_preactivation(width, norm, activation))
        self.head = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if activation == "relu":
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if merge != "none" and norm == "none" and depth > 2:
            with torch.no_grad():
                for unit in self.units:
                    unit.branch[-1].weight.mul_((depth - 2) ** -0.5)

    @property
    def is_plain(self) -> bool:
        return self.merge == "none"

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim < 2 or x[0].numel() != self.in_features:
            size = getattr(self, "model_options", {}).get("image_size")
            raise ModelConfigError(
                f"{getattr(self, 'model_name', 'mlp')} takes (N, C, H, W) images with C·H·W = {self.in_features} "
                f"(image_size={size}), got {tuple(x.shape)}; build it with image_size=(H, W) and in_chans=C of the data")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The activated features the head classifies, (N, width)."""
        self._check(x)
        return self.final_activation(self.units(self.input(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _build(name: str, depth: int, *, merge: str, num_classes: int, in_chans: int = 1, **options) -> MLP:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ModelConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; options are: {', '.join(DEFAULTS)}")
    settings = {**DEFAULTS, **options}
    if isinstance(depth, bool) or depth < 3:
        raise ModelConfigError(f"{name}: an MLP here has at least 3 weight layers (input, one hidden unit, output), "
                               f"got {depth}")
    check_positive(name, "width", settings["width"])
    check_positive(name, "in_chans", in_chans)
    check_choice(name, "norm", settings["norm"], ("batch", "none"))
    check_choice(name, "activation", settings["activation"], tuple(ACTIVATIONS))
    settings["dropout"] = check_probability(name, "dropout", settings["dropout"])
    size = settings["image_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ModelConfigError(f"{name}: image_size must be (H, W) of positive integers, got {settings['image_size']!r}")
    settings["image_size"] = list(size)
    model = MLP(in_chans * size[0] * size[1], num_classes, depth, merge=merge,
                **{k: v for k, v in settings.items() if k != "image_size"})
    model.model_name, model.model_options = name, dict(settings)
    # What export, profile and bench size the input's channels from (the flattened features hide them).
    model.in_chans = in_chans
    return model


register_family(ModelFamily("resmlp{d}", re.compile(r"resmlp(\d+)"), "vector",
                            "MLP with d weight layers and residual hidden units, on images flattened to vectors",
                            lambda name, depth, **kw: _build(name, depth, merge="sum", **kw),
                            default_num_classes=10, default_input_size=8, examples=("resmlp10", "resmlp20", "resmlp50")))
register_family(ModelFamily("plain_mlp{d}", re.compile(r"plain_mlp(\d+)"), "vector",
                            "the same MLP without shortcuts (plain twin)",
                            lambda name, depth, **kw: _build(name, depth, merge="none", **kw),
                            default_num_classes=10, default_input_size=8, examples=("plain_mlp10", "plain_mlp20", "plain_mlp50")))
