"""One residual wrapper for every family outside the ResNet spec: ``y = merge(F(x), x)``.

The merge is a value — ``"sum"`` (He et al.), ``"none"`` (the plain twin), ``"highway"`` (a
learned gate, Srivastava et al. 2015) or ``"rezero"`` (x + α·F(x) with α = 0 at the start;
Bachlechner et al. 2020, SkipInit: De & Smith 2020) — and so is where the norm sits: ``"pre"``
(y = merge(F(norm(x)), x), GPT-2's pre-LN) or ``"post"`` (y = norm(merge(F(x), x)), the original
transformer's). The attributes the analyses use are those of
:class:`reslab.models.blocks.ResidualBlock`: ``branch_output`` (hook point), ``branch_enabled``
(lesion), ``residual`` and ``changes_shape``.

* ``"highway"``: ``y = T·F(x) + (1 − T)·x`` with ``T = sigmoid(gate(x))``; ``gate`` is a
  ``Linear(width, width)`` starting with weight 0 and bias −2 (T ≈ 0.12: the unit starts by carrying
  x). It is named ``gate`` so that :func:`reslab.models.weight_layers` leaves it out.
* ``"rezero"``: one learnable scalar ``alpha`` = 0 at the start, so the unit is the identity.
* ``norm`` is a module (``nn.LayerNorm(width)``, ``nn.BatchNorm1d(width)``) or ``None``; a
  BatchNorm1d on ``(B, T, D)`` sequences normalises each of the D features (transposed for it).
* ``branch_output`` sees F(x) before dropout, drop-path and the merge; with ``branch_enabled``
  False the unit returns its input x (lesion: the shortcut of a residual unit, the identity of a
  plain one).
"""

from __future__ import annotations

import torch
from torch import nn

from reslab.errors import ModelConfigError

MERGES = ("sum", "none", "highway", "rezero")
NORM_POSITIONS = ("pre", "post")


def check_choice(model: str, option: str, value, choices) -> None:
    if value not in choices:
        raise ModelConfigError(f"{model}: {option} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_probability(model: str, option: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ModelConfigError(f"{model}: {option} must be a probability in [0, 1), got {value!r}")
    return float(value)


def check_positive(model: str, option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(f"{model}: {option} must be a positive integer, got {value!r}")
    return value


class Residual(nn.Module):
    """``merge(F(x), x)`` around ``branch`` (F), with optional norm, dropout and drop-path on F."""

    def __init__(self, branch: nn.Module, width: int, *, merge: str = "sum", norm: nn.Module | None = None,
                 norm_position: str = "pre", dropout: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ModelConfigError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
        if norm_position not in NORM_POSITIONS:
            raise ModelConfigError(f"norm position must be 'pre' or 'post', got {norm_position!r}")
        if norm is not None and not isinstance(norm, nn.Module):
            raise ModelConfigError(f"norm must be a module (e.g. nn.LayerNorm({width})) or None, got {norm!r}")
        for key, value in (("dropout", dropout), ("drop_path", drop_path)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ModelConfigError(f"{key} must be a probability in [0, 1), got {value!r}")
        if drop_path > 0 and merge == "none":
            raise ModelConfigError("drop_path (stochastic depth) needs a shortcut; a plain unit would lose its layer")
        self.branch = branch
        self.norm = norm if norm is not None else nn.Identity()
        self.merge_kind, self.norm_position = merge, norm_position
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_path = float(drop_path)
        self.branch_output = nn.Identity()
        self.branch_enabled = True
        self.gate = None
        if merge == "highway":
            self.gate = nn.Linear(width, width)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, -2.0)  # start by carrying x: T = sigmoid(-2) ≈ 0.12
        self.alpha = nn.Parameter(torch.zeros(())) if merge == "rezero" else None

    @property
    def residual(self) -> bool:
        """Whether the unit has a shortcut: every merge but ``"none"``."""
        return self.merge_kind != "none"

    @property
    def merge(self) -> str:
        """The merge: ``"sum"``, ``"none"``, ``"highway"`` or ``"rezero"``."""
        return self.merge_kind

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.norm, nn.BatchNorm1d) and x.ndim == 3:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, T, D): BatchNorm1d wants (B, D, T)
        return self.norm(x)

    changes_shape = False

    def _drop_path(self, f: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return f
        keep = 1.0 - self.drop_path
        mask = f.new_empty((f.shape[0],) + (1,) * (f.ndim - 1)).bernoulli_(keep)
        return f * mask / keep

    def _merge(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.merge_kind == "none":
            return f
        if self.merge_kind == "sum":
            return x + f
        if self.merge_kind == "rezero":
            return x + self.alpha * f
        gate = torch.sigmoid(self.gate(x))
        return gate * f + (1.0 - gate) * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.branch_enabled:
            return x  # the branch removed: a residual unit passes its shortcut, a plain one the identity
        inner = self._normalise(x) if self.norm_position == "pre" else x
        f = self._drop_path(self.dropout(self.branch_output(self.branch(inner))))
        y = self._merge(f, x)
        return self._normalise(y) if self.norm_position == "post" else y

    def extra_repr(self) -> str:
        return f"merge={self.merge_kind!r}, norm_position={self.norm_position!r}"
