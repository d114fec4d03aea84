"""The plane of a training trajectory: PCA of the checkpoints around the final weights.

Random directions in a space of 10⁵–10⁶ dimensions are almost orthogonal to the path an
optimiser took, so a random plane cannot show it (Li et al. 2018, §7). Instead, with the
checkpoints θ_0 … θ_{n-1} and the final weights θ_n, the rows ``θ_i − θ_n`` are centred and
their top-2 principal directions span the plane; the checkpoints are then projected onto it.
The directions are unit vectors in parameter units (not filter-normalised), and the fraction
of the trajectory's variance they explain says how faithful the 2-D picture is.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from reslab.analysis.landscape.directions import Plane, State, is_filter_weight
from reslab.errors import AnalysisError


def trajectory_keys(final: Mapping[str, torch.Tensor], parameter_names: Sequence[str],
                    keep_bn_bias: bool = False) -> list[str]:
    """The keys the PCA runs over: conv/linear weights, plus 1-D parameters when kept."""
    return [k for k in parameter_names if keep_bn_bias or is_filter_weight(final[k])]


def _flatten(state: Mapping[str, torch.Tensor], keys: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[k].detach().to("cpu", torch.float32).reshape(-1) for k in keys])


def _unflatten(vector: torch.Tensor, like: Mapping[str, torch.Tensor], keys: Sequence[str]) -> State:
    out: State = {}
    offset = 0
    for k in keys:
        n = like[k].numel()
        out[k] = vector[offset:offset + n].view_as(like[k]).to(torch.float32).clone()
        offset += n
    return out


def pca_directions(states: Sequence[Mapping[str, torch.Tensor]], final: Mapping[str, torch.Tensor],
                   keys: Sequence[str], components: int = 2) -> tuple[list[State], torch.Tensor, torch.Tensor]:
    """Top principal directions of the trajectory ``states`` relative to ``final``.

    Args:
        states: the checkpoints before the final one (n ≥ components + 1 distinct ones).
        final: the final weights (the plane's origin).
        keys: the tensors to use (see :func:`trajectory_keys`).
        components: 1 or 2.

    Returns ``(directions, explained_variance_ratio (components,), coords (n, components))``:
    unit-norm directions over ``keys``; the ratio of the centred trajectory's variance each
    explains; and each state's coordinates ``(θ_i − θ_n) · d_k``. Directions are signed so that
    the first state has a negative coordinate (the path runs towards +x/+y to the origin).
    """
    if not states:
        raise AnalysisError("a PCA plane needs saved checkpoints along the trajectory; none were given")
    final_vec = _flatten(final, keys).double()
    rows = torch.stack([_flatten(s, keys).double() - final_vec for s in states])  # (n, P)
    centred = rows - rows.mean(dim=0, keepdim=True)
    # The n × n Gram matrix instead of an SVD of n × P: n is tens to hundreds, P up to millions.
    gram = centred @ centred.T
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    order = torch.argsort(eigenvalues, descending=True)
    eigenvalues, eigenvectors = eigenvalues[order].clamp_min(0), eigenvectors[:, order]
    total = float(eigenvalues.sum())
    if total <= 0 or int((eigenvalues > total * 1e-12).sum()) < components:
        raise AnalysisError(
            f"the trajectory spans fewer than {components} dimensions ({len(states)} checkpoints, some identical); "
            "save more epochs (train with --set save_every=1) or use --plane random")
    directions: list[State] = []
    coords = []
    for k in range(components):
        vector = centred.T @ eigenvectors[:, k]
        vector = vector / vector.norm()
        projection = rows @ vector
        if float(projection[0]) > 0:
            vector, projection = -vector, -projection
        directions.append(_unflatten(vector, final, keys))
        coords.append(projection)
    ratio = (eigenvalues[:components] / total).to(torch.float64)
    return directions, ratio, torch.stack(coords, dim=1)


def pca_plane(states: Sequence[Mapping[str, torch.Tensor]], final: Mapping[str, torch.Tensor],
              parameter_names: Sequence[str], labels: Sequence[str] | None = None, dims: int = 2,
              keep_bn_bias: bool = False, final_label: str = "final") -> Plane:
    """A :class:`Plane` through ``final`` spanned by the trajectory's top PCA directions.

    states: the trajectory's checkpoints (oldest first), ``final`` excluded.
    final: the full final state (parameters and buffers): the origin; buffers stay fixed.
    labels: names of the states (e.g. ``["init", "epoch_1", ...]``), stored with the plane.
    final_label: the name of the final state (e.g. ``"last"``).
    """
    if dims not in (1, 2):
        raise AnalysisError(f"--dims must be 1 or 2, got {dims}")
    keys = trajectory_keys(final, parameter_names, keep_bn_bias)
    directions, ratio, coords = pca_directions(states, final, keys, components=dims)
    labels = list(labels) if labels is not None else [f"state_{i}" for i in range(len(states))]
    origin = {k: v.detach().to("cpu", torch.float32).clone() for k, v in final.items()}
    # The final point itself sits at the origin: append it so the plotted path ends there.
    trajectory = torch.cat([coords, torch.zeros(1, dims, dtype=coords.dtype)]).to(torch.float64)
    info = {
        "explained_variance_ratio": [float(r) for r in ratio],
        "trajectory_labels": labels + [final_label],
        "keep_bn_bias": bool(keep_bn_bias),
        "normalization": "none (unit PCA directions)",
    }
    return Plane("pca", origin, directions, info, trajectory=trajectory)
