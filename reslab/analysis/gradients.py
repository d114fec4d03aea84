"""Gradient flow: how large the loss gradient is at each weight layer, plain vs residual.

Three measurements:

* :func:`layer_gradients` — ‖∂L/∂W‖ (Frobenius) of every main-path weight layer (the layers
  counted in a model's depth), the weight norm ‖W‖ and the update-to-weight ratio
  ``lr·‖g‖/‖W‖`` (the relative size of a plain SGD step; ``‖g‖/‖W‖`` when the learning rate is
  unknown). BN uses batch statistics, as in a training step; the model's buffers are restored.
* :func:`classic_vanishing_gradients` — the textbook case without batch norm: a deep tanh (or
  sigmoid) MLP, plain ``h ← act(W h + b)`` vs residual ``h ← h + act(W h + b)``, with the classic
  initialisation ``W ~ U(−1/√n, 1/√n)``. The plain net's first-layer gradient is many orders of
  magnitude below its last layer's; the residual net's is not.
* :func:`shattered_gradients` — Balduzzi et al. 2017, "The shattered gradients problem": the
  input gradient ∂(u·f)/∂x along a straight line of inputs between two test images; the mean
  correlation between gradients at points ``lag`` steps apart. Plain deep nets' gradients
  decorrelate quickly (white-noise-like), residual nets' stay correlated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reslab.analysis.common import (
    KIND_PLAIN,
    KIND_RESIDUAL,
    Result,
    Target,
    batches,
    model_kind,
)
from reslab.errors import AnalysisError
from reslab.models import weight_layers
from reslab.settings import Settings, setting
from reslab.train.evaluation import task_cross_entropy

CLASSIC_ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": F.relu}


@dataclass
class LayerGradients:
    """Per-weight-layer gradient statistics of one model at one checkpoint.

    All lists have one entry per weight layer (index 0 = the first layer the input meets).
    """

    label: str
    model: str
    kind: str                     # "residual" or "plain"
    checkpoint: str
    layers: list[str]
    grad_norm: list[float]        # ‖∂L/∂W‖_F
    weight_norm: list[float]      # ‖W‖_F
    update_ratio: list[float]     # lr·‖g‖/‖W‖ (or ‖g‖/‖W‖ when lr is None)
    lr: float | None = None
    loss: float | None = None

    @property
    def first_last_ratio(self) -> float:
        """‖g‖ of the first layer over ‖g‖ of the last (< 1: gradients shrink towards the input)."""
        last = self.grad_norm[-1]
        return self.grad_norm[0] / last if last > 0 else math.nan


@dataclass
class ShatteredGradients:
    """Correlation of input gradients along a line of inputs (one model)."""

    label: str
    model: str
    kind: str
    lags: list[int]               # steps apart
    distance: list[float]         # lag as a fraction of the line's length
    correlation: list[float]      # mean Pearson correlation of gradients `lag` steps apart
    matrix: np.ndarray | None = None  # (steps, steps) correlation of every pair


@dataclass
class GradientFlowResult(Result):
    """Everything ``reslab analyze gradients`` measures (saved as ``gradients.json/.npz``)."""

    analysis: ClassVar[str] = "gradients"
    target: dict[str, Any]
    series: list[LayerGradients]
    settings: dict[str, Any] = field(default_factory=dict)
    classic: list[LayerGradients] = field(default_factory=list)
    classic_settings: dict[str, Any] = field(default_factory=dict)
    shattered: list[ShatteredGradients] = field(default_factory=list)


# -- gradients of a network ----------------------------------------------------------------------
def weight_layers_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Main-path conv/linear layers (reslab models), or every conv/linear layer (other modules)."""
    layers = weight_layers(model)
    if not layers:
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise AnalysisError(f"{type(model).__name__} has no convolution or linear layers to measure gradients of")
    return layers


def layer_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label: str | None = None,
    checkpoint: str = "init",
    lr: float | None = None,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> LayerGradients:
    """Gradient norms of the mean cross-entropy over ``(x, y)`` at every weight layer.

    x: (N, C, H, W) normalised inputs, y: (N,) labels (or masks (N, H, W); or token windows x, y
    (N, T)). The gradient is that of the mean loss over all labels of the N samples, accumulated over batches of ``batch_size`` (BN statistics are per batch, as in
    training). Dropout and drop-path are off so the result is deterministic. The model's
    parameters, gradients, buffers and mode are left as they were.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise AnalysisError(f"need as many labels as inputs (and at least one), got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        # Gradients are measured with BN in training mode, and BatchNorm1d cannot normalise one vector.
        raise AnalysisError(f"{getattr(model, 'model_name', type(model).__name__)} is a vector model whose "
                            f"BatchNorm1d normalises each feature over the batch in training mode, which one sample "
                            f"cannot fill: give --samples 2 or more")
    device = torch.device(device)
    layers = weight_layers_of(model)
    params = [module.weight for _, module in layers]
    saved_buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    was_training = model.training
    original_device = next(model.parameters()).device
    model.to(device)
    _train_mode_without_noise(model)
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    total_loss = 0.0
    try:
        for xb, yb in batches(x, y, batch_size, device, min_batch=2):  # BN in training mode
            loss = task_cross_entropy(model(xb), yb, reduction="sum")
            batch_grads = torch.autograd.grad(loss, params)
            for acc, g in zip(grads, batch_grads):
                acc += g.double()
            total_loss += float(loss.detach())
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved_buffers[name].to(buf.device))
        model.to(original_device)
    # The mean over every label: an image's, a pixel's or a character's (y.numel() of them).
    n = y.numel()
    grad_norm = [float(g.norm()) / n for g in grads]
    weight_norm = [float(p.detach().double().norm()) for p in params]
    scale = 1.0 if lr is None else float(lr)
    ratio = [scale * g / w if w > 0 else math.nan for g, w in zip(grad_norm, weight_norm)]
    return LayerGradients(
        label=label or str(getattr(model, "model_name", type(model).__name__)),
        model=str(getattr(model, "model_name", type(model).__name__)),
        kind=model_kind(model), checkpoint=checkpoint, layers=[name for name, _ in layers],
        grad_norm=grad_norm, weight_norm=weight_norm, update_ratio=ratio, lr=lr, loss=total_loss / n,
    )


def _train_mode_without_noise(model: nn.Module) -> None:
    """BN in training mode (batch statistics); dropout and drop-path off."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout) or type(module).__name__ == "DropPath":
            module.eval()


def target_gradients(target: Target, x: torch.Tensor, y: torch.Tensor, lr: float | None = None,
                     batch_size: int = 128, device="cpu") -> LayerGradients:
    """:func:`layer_gradients` of a :class:`Target`, labelled ``"<label> @ <checkpoint>"``."""
    return layer_gradients(target.model, x, y, label=f"{target.label} @ {target.checkpoint}",
                           checkpoint=target.checkpoint, lr=lr, batch_size=batch_size, device=device)


# -- the classic case: deep MLP without batch norm -----------------------------------------------
class ClassicMLP(nn.Module):
    """A deep MLP without normalisation, plain or residual (the textbook vanishing-gradient case).

    ``x (N, ...) → flatten → act(Linear(in, width)) → depth × hidden layer → Linear(width, classes)``,
    where a hidden layer is ``act(W h + b)`` (plain) or ``h + act(W h + b)`` (residual). Weights
    and biases start ``U(−1/√n, 1/√n)`` (n = fan-in), PyTorch's default and the classic choice.
    Weight layers: ``depth + 2``.
    """

    def __init__(self, in_features: int, num_classes: int, depth: int = 50, width: int = 64,
                 activation: str = "tanh", residual: bool = False):
        super().__init__()
        if activation not in CLASSIC_ACTIVATIONS:
            raise AnalysisError(f"activation must be one of {', '.join(CLASSIC_ACTIVATIONS)}, got {activation!r}")
        if depth < 1 or width < 1:
            raise AnalysisError(f"the classic MLP needs depth ≥ 1 and width ≥ 1, got depth={depth}, width={width}")
        self.activation = CLASSIC_ACTIVATIONS[activation]
        self.residual = residual
        self.input = nn.Linear(in_features, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.fc = nn.Linear(width, num_classes)
        self.model_name = f"{'residual' if residual else 'plain'}_mlp{depth + 2}_{activation}"
        self.model_options = {"depth": depth, "width": width, "activation": activation}

    @property
    def is_plain(self) -> bool:
        return not self.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.input(torch.flatten(x, 1)))
        for layer in self.hidden:
            out = self.activation(layer(h))
            h = h + out if self.residual else out
        return self.fc(h)


def classic_vanishing_gradients(
    depth: int = 50,
    activation: str = "tanh",
    width: int = 64,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    num_classes: int = 10,
    samples: int = 256,
    seed: int = 0,
) -> tuple[list[LayerGradients], dict[str, Any]]:
    """Layer gradient norms of a plain and a residual :class:`ClassicMLP` at initialisation.

    x: (N, ...) inputs (flattened), y: (N,) labels; when ``None``, ``samples`` standard normal
    vectors of size ``width`` with random labels. Both nets get the same seed, so their weights
    are identical: only the shortcut differs. Returns ``([plain, residual], settings)``.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = "dataset images" if x is not None else f"{samples} standard normal vectors, random labels"
    if x is None:
        x = torch.randn(samples, width, generator=generator)
        y = torch.randint(0, num_classes, (samples,), generator=generator)
    elif y is None:
        raise AnalysisError("classic_vanishing_gradients: pass labels y with the inputs x")
    else:
        num_classes = max(num_classes, int(y.max()) + 1)
    in_features = int(np.prod(x.shape[1:]))
    series = []
    for residual in (False, True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ClassicMLP(in_features, num_classes, depth, width, activation, residual)
        kind = KIND_RESIDUAL if residual else KIND_PLAIN
        result = layer_gradients(model, x, y, label=f"{kind} MLP, {activation}, no BN",
                                 checkpoint="init", batch_size=max(1, x.shape[0]))
        series.append(result)
    settings = {"depth": depth, "weight_layers": depth + 2, "width": width, "activation": activation,
                "init": "U(-1/sqrt(fan_in), 1/sqrt(fan_in))", "samples": int(x.shape[0]),
                "inputs": inputs,
                "seed": seed}
    return series, settings


# -- shattered gradients -------------------------------------------------------------------------
def shattered_gradients(
    model: nn.Module,
    start: torch.Tensor,
    end: torch.Tensor,
    *,
    steps: int = 128,
    max_lag: int | None = None,
    label: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    keep_matrix: bool = True,
) -> ShatteredGradients:
    """Correlation of input gradients along the segment from ``start`` to ``end``.

    start, end: (C, H, W) normalised images. At ``steps`` evenly spaced points x_t of the segment
    the gradient g_t = ∂(u·f(x_t))/∂x_t is taken, u a fixed random unit vector over the logits (a
    scalar output as in Balduzzi et al.). correlation[k] is the mean Pearson correlation of
    g_t and g_{t+k} over t, for k = 0..max_lag (default steps // 2). Eval mode (BN uses its
    running statistics), so points are independent.
    """
    if steps < 2:
        raise AnalysisError(f"shattered gradients need at least 2 points on the line, got steps={steps}")
    device = torch.device(device)
    was_training = model.training
    original_device = next(model.parameters()).device
    model.to(device).eval()
    t = torch.linspace(0.0, 1.0, steps).view(-1, *([1] * start.dim()))
    points = (1 - t) * start.unsqueeze(0) + t * end.unsqueeze(0)
    generator = torch.Generator().manual_seed(seed)
    grads = []
    try:
        u = None
        for xb, _ in batches(points, None, batch_size, device):
            xb = xb.clone().requires_grad_(True)
            logits = model(xb)
            if u is None:
                u = torch.randn(logits.shape[1], generator=generator).to(device)
                u = u / u.norm()
            (grad,) = torch.autograd.grad((logits @ u).sum(), xb)
            grads.append(grad.flatten(1).double().cpu())
    finally:
        model.train(was_training)
        model.to(original_device)
    g = torch.cat(grads)
    g = g - g.mean(dim=1, keepdim=True)
    norms = g.norm(dim=1, keepdim=True).clamp_min(1e-300)
    g = g / norms
    matrix = (g @ g.T).numpy()
    # Beyond half the line few pairs remain, so the mean gets noisy: stop there by default.
    max_lag = steps // 2 if max_lag is None else min(max_lag, steps - 1)
    lags = list(range(max_lag + 1))
    correlation = [float(np.mean(np.diagonal(matrix, offset=k))) for k in lags]
    return ShatteredGradients(
        label=label or str(getattr(model, "model_name", type(model).__name__)),
        model=str(getattr(model, "model_name", type(model).__name__)), kind=model_kind(model),
        lags=lags, distance=[k / (steps - 1) for k in lags], correlation=correlation,
        matrix=matrix.astype(np.float32) if keep_matrix else None,
    )


# -- all of it -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientSettings(Settings):
    """The options of :func:`analyze_gradients` and ``reslab analyze gradients``, with their one default."""

    batch_size: int = setting(128, "images per forward pass", minimum=1, cli=False)  # a shared target argument
    device: str = setting("cpu", "where to compute", cli=False)
    classic: bool = setting(True, "also the classic no-BN case (a deep MLP)", cli=False)  # the CLI's --no-classic
    classic_depth: int = setting(50, "hidden layers of the MLP", minimum=1)
    classic_activation: Literal["tanh", "sigmoid", "relu"] = setting("tanh", "activation of the MLP")
    shattered_steps: int = setting(128, "points on the line", minimum=2)
    seed: int = setting(0, "seed of the classic MLP and of the shattered-gradients line", minimum=0, cli=False)
    progress: bool = setting(False, "a progress bar on stderr", cli=False)


def analyze_gradients(targets: Iterable[tuple[Target, float | None]], x: torch.Tensor, y: torch.Tensor,
                      settings: GradientSettings | Mapping[str, Any] | None = None, *, describe: dict[str, Any],
                      shattered: Iterable[Target] = (), line: tuple[torch.Tensor, torch.Tensor] | None = None,
                      **changes: Any) -> GradientFlowResult:
    """Gradient flow of every ``(target, lr)`` on ``(x, y)``, plus the classic case and shattering.

    targets: models at their checkpoints, with the learning rate in force there (or ``None``).
    x: (N, C, H, W) normalised training images, y: (N,) labels.
    settings: a :class:`GradientSettings` (or mapping); ``changes`` — any of its fields as
    keywords (``classic_depth=4``, ``batch_size=64``) — on top.
    describe: what the result records as its target (see :meth:`Target.describe`).
    line: ``(start, end)`` images for :func:`shattered_gradients` of the ``shattered`` targets.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

    s = GradientSettings.of(settings, **changes)
    batch_size, device, seed, shattered_steps = s.batch_size, s.device, s.seed, s.shattered_steps
    targets = list(targets)
    series = [target_gradients(target, x, y, lr=lr, batch_size=batch_size, device=device)
              for target, lr in tqdm(targets, desc="gradients", unit="model", disable=not s.progress)]
    classic_series, classic_settings = ([], {})
    if s.classic:
        classic_series, classic_settings = classic_vanishing_gradients(
            depth=s.classic_depth, activation=s.classic_activation, num_classes=int(y.max()) + 1, seed=seed)
    shattered_series = []
    shattered = list(shattered)
    if shattered:
        if line is None:
            raise AnalysisError("shattered gradients need a line of inputs: pass line=(start_image, end_image)")
        shattered_series = [
            shattered_gradients(t.model, line[0], line[1], steps=shattered_steps, label=t.label,
                                seed=seed, device=device)
            for t in shattered
        ]
    settings = {"samples": int(x.shape[0]), "split": "train", "batch_size": batch_size, "seed": seed,
                "loss": "mean cross-entropy", "bn": "batch statistics (training mode)",
                "update_ratio": "lr*|g|/|W| where lr is known, else |g|/|W|",
                "shattered_steps": shattered_steps if shattered_series else None}
    return GradientFlowResult(target=describe, series=series, settings=settings, classic=classic_series,
                              classic_settings=classic_settings, shattered=shattered_series)
