"""Directions in weight space and the planes (or lines) they span around a point.

A *state* is a dict ``name -> float tensor`` over a model's parameters and floating-point
buffers (BN running statistics), keyed as in ``model.state_dict()``. A direction is a state
over a subset of those keys (absent keys are zero). A :class:`Plane` is an origin state plus
one or two directions; the point at coordinates ``(a, b)`` is ``origin + a·d_x + b·d_y``.

Filter normalisation (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets", §4):
a random Gaussian direction ``d`` is rescaled filter by filter, ``d_f ← d_f · ‖θ_f‖ / ‖d_f‖``,
where a *filter* is one output-channel slice of a conv weight ``(out, in, kh, kw)`` or one row of
a linear weight ``(out, in)``. A step of 1 along ``d`` then moves every filter by its own norm,
which removes the scale invariance that BN gives the weights before it (a net and a copy with
filters scaled by 10 compute the same function, so an unnormalised direction would make the
second look ten times flatter). One-dimensional parameters (BN γ/β, biases) get a zero
direction by default; with ``keep_bn_bias=True`` they get ``d = θ`` (their own values), as
Li et al.'s code does, so moving ``a`` along the direction scales them by ``1 + a``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from reslab.errors import AnalysisError
from reslab.store.jsonfiles import json_ready
from reslab.train.checkpoint import check_state_matches
from reslab.utils import atomic_path

State = dict[str, torch.Tensor]

#: Added to a direction filter's norm before dividing, so an all-zero filter stays zero.
FILTER_EPS = 1e-10
PLANE_KINDS = ("random", "pca", "interp")


# -- states --------------------------------------------------------------------------------------
def model_state(model: nn.Module, buffers: bool = True) -> State:
    """The model's parameters (and floating-point buffers) as detached float32 CPU copies.

    Integer buffers (BN's ``num_batches_tracked``) are left out: they are never perturbed.
    Returns ``name -> tensor`` in ``state_dict`` order.
    """
    state: State = {}
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        state[name] = tensor.detach().to("cpu", torch.float32).clone()
    if not buffers:
        parameter_names = {name for name, _ in model.named_parameters()}
        state = {k: v for k, v in state.items() if k in parameter_names}
    return state


def parameter_names(model: nn.Module) -> list[str]:
    """Names of the trainable parameters, in ``named_parameters`` order."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def is_filter_weight(tensor: torch.Tensor) -> bool:
    """Conv and linear weights (2-D or more) have filters; BN parameters and biases are 1-D."""
    return tensor.dim() > 1


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, shapes and float32 bytes (key order independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def architecture_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the names and shapes of ``state``: equal for checkpoints of one architecture."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(f"{name}:{tuple(state[name].shape)};".encode())
    return digest.hexdigest()


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Inner product of two states over their common keys (float64 accumulation)."""
    return float(sum(torch.sum(a[k].double() * b[k].double()) for k in a if k in b))


def norm(a: Mapping[str, torch.Tensor]) -> float:
    return math.sqrt(max(dot(a, a), 0.0))


def combine(origin: Mapping[str, torch.Tensor], directions: Iterable[Mapping[str, torch.Tensor]],
            coords: Iterable[float]) -> State:
    """``origin + Σ c_i · d_i`` (keys of ``origin``; a direction's missing key counts as zero)."""
    out = {k: v.clone() for k, v in origin.items()}
    for direction, c in zip(directions, coords):
        if c == 0:
            continue
        for k, d in direction.items():
            out[k].add_(d.to(out[k].device, out[k].dtype), alpha=float(c))
    return out


def check_compatible(reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], what: str) -> None:
    """CheckpointError unless ``other`` has exactly ``reference``'s keys and shapes."""
    check_state_matches(reference, other, what, hint="both must come from the same architecture")


# -- random, filter-normalised directions -----------------------------------------------------------
def random_direction(weights: Mapping[str, torch.Tensor], seed: int, keep_bn_bias: bool = False,
                     normalization: str = "filter", names: Iterable[str] | None = None) -> State:
    """A seeded Gaussian direction over ``weights``' parameters, normalised to them.

    Args:
        weights: the parameters to perturb (``name -> tensor``); buffers must not be included
            (pass ``names`` to choose the keys of a larger state).
        seed: the direction is drawn on the CPU from ``torch.Generator().manual_seed(seed)``,
            one tensor per key in order, so it is the same on every device and machine.
        keep_bn_bias: keep 1-D parameters (BN γ/β, biases), with ``d = θ`` (Li et al.); else zero.
        normalization: ``"filter"`` (Li et al.), ``"layer"`` (each tensor scaled to its weight's
            norm) or ``"none"`` (raw Gaussian).
        names: the keys to draw for (default: all of ``weights``).

    Returns a state over the chosen keys (1-D keys present, as zeros, when not kept).
    """
    generator = torch.Generator().manual_seed(int(seed))
    keys = list(names) if names is not None else list(weights)
    direction: State = {}
    for name in keys:
        w = weights[name].detach().to("cpu", torch.float32)
        # Draw for every key, kept or not, so a key's draw does not depend on keep_bn_bias.
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32)
        direction[name] = d
    return normalize_direction(direction, weights, normalization=normalization, keep_bn_bias=keep_bn_bias)


def normalize_direction(direction: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                        normalization: str = "filter", keep_bn_bias: bool = False) -> State:
    """Rescale ``direction`` to ``weights`` (see the module docstring); returns a new state.

    direction, weights: ``name -> tensor`` with equal shapes per key.
    """
    if normalization not in ("filter", "layer", "none"):
        raise AnalysisError(f"normalization must be 'filter', 'layer' or 'none', got {normalization!r}")
    out: State = {}
    for name, d in direction.items():
        w = weights[name].detach().to(d.device, torch.float32)
        if not is_filter_weight(w):
            out[name] = w.clone() if keep_bn_bias else torch.zeros_like(d)
            continue
        d = d.to(torch.float32)
        if normalization == "filter":
            d_norm = d.flatten(1).norm(dim=1)
            w_norm = w.flatten(1).norm(dim=1)
            scale = w_norm / (d_norm + FILTER_EPS)
            out[name] = d * scale.view(-1, *([1] * (d.dim() - 1)))
        elif normalization == "layer":
            out[name] = d * (w.norm() / (d.norm() + FILTER_EPS))
        else:
            out[name] = d.clone()
    return out


def filter_norms(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``name -> (out,)`` norms of each filter of every conv/linear weight in ``state``."""
    return {k: v.flatten(1).norm(dim=1) for k, v in state.items() if is_filter_weight(v)}


# -- planes --------------------------------------------------------------------------------------
@dataclass
class Plane:
    """An origin and one or two directions: the line or plane a landscape is drawn on.

    Attributes:
        kind: ``"random"``, ``"pca"`` or ``"interp"``.
        origin: the state at coordinates 0 (parameters and float buffers).
        axes: 1 or 2 directions (states over subsets of ``origin``'s keys).
        info: JSON-ready facts: seeds, normalisation, checkpoints, explained variance...
        trajectory: for ``pca``: ``(n, dims)`` coordinates of the trajectory's checkpoints,
            with ``info["trajectory_labels"]`` naming them.
    """

    kind: str
    origin: State
    axes: list[State]
    info: dict[str, Any] = field(default_factory=dict)
    trajectory: torch.Tensor | None = None

    @property
    def dims(self) -> int:
        return len(self.axes)

    def point(self, coords: Iterable[float]) -> State:
        """The state at ``coords`` (one value per axis)."""
        coords = list(coords)
        if len(coords) != self.dims:
            raise AnalysisError(f"a {self.dims}-D {self.kind} plane needs {self.dims} coordinates, got {len(coords)}")
        return combine(self.origin, self.axes, coords)

    def fingerprint(self) -> str:
        """Hash of the origin and the axes: equal fingerprints give equal landscapes."""
        digest = hashlib.sha256(self.kind.encode())
        digest.update(state_hash(self.origin).encode())
        for axis in self.axes:
            digest.update(state_hash(axis).encode())
        return digest.hexdigest()

    def to(self, device: torch.device | str) -> "Plane":
        move = lambda s: {k: v.to(device) for k, v in s.items()}  # noqa: E731
        return Plane(self.kind, move(self.origin), [move(a) for a in self.axes], dict(self.info), self.trajectory)


def random_plane(model_or_state: nn.Module | Mapping[str, torch.Tensor], dims: int = 2, seed: int = 0,
                 keep_bn_bias: bool = False, normalization: str = "filter",
                 names: Iterable[str] | None = None) -> Plane:
    """A line (``dims=1``) or plane (``dims=2``) of filter-normalised random directions.

    The x direction is drawn with ``seed``, the y direction with ``seed + 1``, so a 1-D line with
    seed s is the x axis of the 2-D plane with seed s. BN running statistics stay at the origin's.

    model_or_state: a model, or its :func:`model_state`; then ``names`` are the parameters
        (default: every key not ending in ``running_mean``/``running_var``).
    """
    if dims not in (1, 2):
        raise AnalysisError(f"--dims must be 1 or 2, got {dims}")
    if isinstance(model_or_state, nn.Module):
        origin = model_state(model_or_state)
        param_keys = parameter_names(model_or_state) if names is None else list(names)
    else:
        origin = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model_or_state.items()}
        param_keys = list(names) if names is not None else [
            k for k in origin if not k.endswith(("running_mean", "running_var"))]
    seeds = [int(seed) + i for i in range(dims)]
    weights = {k: origin[k] for k in param_keys}
    axes = [random_direction(weights, s, keep_bn_bias=keep_bn_bias, normalization=normalization) for s in seeds]
    info: dict[str, Any] = {
        "seeds": seeds, "normalization": normalization, "keep_bn_bias": bool(keep_bn_bias),
        "axis_norms": [norm(a) for a in axes], "origin_norm": norm(weights),
    }
    if dims == 2:
        info["axes_cosine"] = dot(axes[0], axes[1]) / max(info["axis_norms"][0] * info["axis_norms"][1], 1e-30)
    return Plane("random", origin, axes, info)


def interpolation_line(state_from: Mapping[str, torch.Tensor], state_to: Mapping[str, torch.Tensor],
                       label_from: str = "from", label_to: str = "to") -> Plane:
    """The line ``θ(α) = (1 − α)·θ_from + α·θ_to``: α = 0 is ``state_from``, α = 1 is ``state_to``.

    Every float tensor is interpolated, BN running statistics included, so both end points are
    exactly the two checkpoints (a net evaluated in eval mode needs the statistics that match
    its weights).
    """
    check_compatible(state_from, state_to, f"checkpoint {label_to!r}")
    origin = {k: v.detach().to("cpu", torch.float32).clone() for k, v in state_from.items()}
    axis = {k: state_to[k].detach().to("cpu", torch.float32) - origin[k] for k in origin}
    info = {"from": label_from, "to": label_to, "distance": norm(axis), "origin_norm": norm(origin)}
    return Plane("interp", origin, [axis], info)


# -- saving directions -------------------------------------------------------------------------
def save_plane(path: str | Path, plane: Plane) -> Path:
    """Write the plane's axes (and origin hash) as safetensors: ``x.<name>``, ``y.<name>`` tensors.

    Together with the checkpoint this reproduces the surface exactly, whatever the seed rules.
    """

    tensors = {}
    for axis_name, axis in zip("xy", plane.axes):
        for k, v in axis.items():
            tensors[f"{axis_name}.{k}"] = v.detach().to("cpu", torch.float32).contiguous()
    metadata = {"kind": plane.kind, "dims": str(plane.dims), "origin_sha256": state_hash(plane.origin),
                "architecture_sha256": architecture_hash(plane.origin),
                "info": json.dumps(json_ready(plane.info))}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_plane_axes(path: str | Path, origin: Mapping[str, torch.Tensor]) -> tuple[list[State], dict[str, Any]]:
    """Read axes written by :func:`save_plane`; checks they fit ``origin``'s keys and shapes.

    Returns ``(axes, metadata)``; metadata has ``kind``, ``origin_sha256`` and ``info``.
    """

    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"--directions {path}: file does not exist; it is written next to a landscape "
                            "(*.directions.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AnalysisError(f"--directions {path}: not a readable safetensors file ({exc})") from None
    axes: list[State] = []
    for axis_name in "xy":
        axis = {k[2:]: v for k, v in tensors.items() if k.startswith(axis_name + ".")}
        if axis:
            axes.append(axis)
    if not axes:
        raise AnalysisError(f"--directions {path}: holds no x./y. direction tensors")
    saved_architecture = metadata.get("architecture_sha256")
    if saved_architecture and saved_architecture != architecture_hash(origin):
        raise AnalysisError(f"--directions {path}: the directions were made for another architecture (its tensors' "
                            "names and shapes differ from this model's)")
    for axis in axes:
        unknown = sorted(set(axis) - set(origin))
        if unknown:
            raise AnalysisError(f"--directions {path}: tensor {unknown[0]!r} is not in the model; "
                                "the directions were made for another architecture")
        for k, v in axis.items():
            if tuple(v.shape) != tuple(origin[k].shape):
                raise AnalysisError(f"--directions {path}: {k} has shape {tuple(v.shape)}, the model's is "
                                    f"{tuple(origin[k].shape)}")
    info = json.loads(metadata.get("info", "{}") or "{}")
    return axes, {"kind": metadata.get("kind", "random"), "origin_sha256": metadata.get("origin_sha256"),
                  "info": info}

