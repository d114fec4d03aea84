"""Filter-normalised directions, planes, interpolation lines and PCA planes of trajectories."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reslab.analysis.landscape import (
    filter_norms,
    interpolation_line,
    load_plane_axes,
    model_state,
    normalize_direction,
    pca_directions,
    pca_plane,
    random_direction,
    random_plane,
    save_plane,
)
from reslab.analysis.landscape.directions import dot, norm
from reslab.errors import AnalysisError, CheckpointError
from reslab.models import create_model


def tiny_model(seed: int = 0, name: str = "cifar_resnet8") -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=4, in_chans=1).eval()


def test_filter_normalised_direction_has_the_weights_filter_norms_and_zero_bn_bias():
    model = tiny_model()
    weights = {k: v.detach() for k, v in model.named_parameters()}
    direction = random_direction(weights, seed=3)
    assert set(direction) == set(weights)
    checked = 0
    for name, w in weights.items():
        d = direction[name]
        assert d.shape == w.shape
        if w.dim() > 1:  # conv (out, in, kh, kw) and linear (out, in): one norm per output filter
            torch.testing.assert_close(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5, atol=1e-6)
            checked += 1
        else:  # BN gamma/beta and the fc bias
            assert torch.count_nonzero(d) == 0, name
    assert checked == sum(1 for w in weights.values() if w.dim() > 1) >= 8
    assert set(filter_norms(direction)) == {k for k, w in weights.items() if w.dim() > 1}


def test_keep_bn_bias_uses_the_parameters_own_values_and_draws_do_not_depend_on_it():
    weights = {k: v.detach() for k, v in tiny_model().named_parameters()}
    kept = random_direction(weights, seed=3, keep_bn_bias=True)
    dropped = random_direction(weights, seed=3)
    for name, w in weights.items():
        if w.dim() <= 1:
            torch.testing.assert_close(kept[name], w)  # Li et al.: d = θ for 1-D parameters
        else:
            torch.testing.assert_close(kept[name], dropped[name])


def test_directions_are_seeded_and_the_1d_line_is_the_x_axis_of_the_plane():
    model = tiny_model()
    a, b = random_plane(model, dims=2, seed=5), random_plane(model, dims=2, seed=5)
    line = random_plane(model, dims=1, seed=5)
    for k in a.axes[0]:
        assert torch.equal(a.axes[0][k], b.axes[0][k]) and torch.equal(a.axes[1][k], b.axes[1][k])
        assert torch.equal(line.axes[0][k], a.axes[0][k])
    other = random_plane(model, dims=1, seed=6)
    assert not all(torch.equal(other.axes[0][k], a.axes[0][k]) for k in a.axes[0] if a.axes[0][k].dim() > 1)
    assert a.info["seeds"] == [5, 6] and abs(a.info["axes_cosine"]) < 0.2  # random high-dim vectors: near-orthogonal
    # BN running statistics are part of the origin, never of a random direction.
    assert any(k.endswith("running_var") for k in a.origin) and not any(k.endswith("running_var") for k in a.axes[0])


def test_layer_and_no_normalisation():
    weights = {"w": torch.randn(4, 3, 3, 3)}
    direction = {"w": torch.randn(4, 3, 3, 3)}
    layer = normalize_direction(direction, weights, "layer")
    assert layer["w"].norm() == pytest.approx(float(weights["w"].norm()), rel=1e-5)
    assert torch.equal(normalize_direction(direction, weights, "none")["w"], direction["w"])
    with pytest.raises(AnalysisError, match="normalization"):
        normalize_direction(direction, weights, "bogus")


def test_plane_points_are_origin_plus_combination():
    model = tiny_model()
    plane = random_plane(model, dims=2, seed=0)
    point = plane.point([0.5, -2.0])
    key = "conv1.weight"
    torch.testing.assert_close(point[key], plane.origin[key] + 0.5 * plane.axes[0][key] - 2.0 * plane.axes[1][key])
    with pytest.raises(AnalysisError):
        plane.point([1.0])


def test_saved_directions_round_trip_and_reject_other_architectures(tmp_path):
    model = tiny_model()
    plane = random_plane(model, dims=2, seed=1)
    path = save_plane(tmp_path / "d.safetensors", plane)
    axes, meta = load_plane_axes(path, plane.origin)
    assert meta["kind"] == "random" and meta["info"]["seeds"] == [1, 2]
    for saved, original in zip(axes, plane.axes):
        assert set(saved) == set(original) and all(torch.equal(saved[k], original[k]) for k in original)
    other = model_state(create_model("cifar_resnet14", num_classes=4, in_chans=1))
    with pytest.raises(AnalysisError, match="another architecture|shape"):
        load_plane_axes(path, other)
    with pytest.raises(AnalysisError, match="does not exist"):
        load_plane_axes(tmp_path / "missing.safetensors", plane.origin)


def test_interpolation_line_ends_at_both_states_including_bn_statistics():
    start, end = model_state(tiny_model(0)), model_state(tiny_model(1))
    end["bn1.running_mean"] += 1.0
    line = interpolation_line(start, end, "a", "b")
    for k in start:
        torch.testing.assert_close(line.point([0.0])[k], start[k])
        torch.testing.assert_close(line.point([1.0])[k], end[k], rtol=1e-6, atol=1e-6)
    assert line.info["from"] == "a" and line.info["to"] == "b" and line.info["distance"] > 0
    with pytest.raises(CheckpointError, match="does not match"):
        interpolation_line(start, model_state(create_model("cifar_resnet14", num_classes=4, in_chans=1)))


def _unit(state):
    n = norm(state)
    return {k: v / n for k, v in state.items()}


def test_pca_plane_recovers_the_directions_of_a_synthetic_trajectory():
    generator = torch.Generator().manual_seed(0)
    final = {"a.weight": torch.randn(6, 5, generator=generator),
             "b.weight": torch.randn(3, 4, 3, 3, generator=generator), "b.bias": torch.randn(3, generator=generator)}
    keys = ["a.weight", "b.weight"]
    u = _unit({k: torch.randn(final[k].shape, generator=generator) for k in keys})
    v = {k: torch.randn(final[k].shape, generator=generator) for k in keys}
    overlap = dot(u, v)
    v = _unit({k: v[k] - overlap * u[k] for k in keys})  # Gram-Schmidt: u ⟂ v
    # Uncorrelated coordinates with unequal spreads: the principal axes are u (larger) and v.
    t = torch.arange(12) * (2 * math.pi / 12)
    a, b = 4.0 * torch.cos(t), 1.0 * torch.sin(t)
    states = []
    for ai, bi in zip(a.tolist(), b.tolist()):
        noise = {k: 1e-4 * torch.randn(final[k].shape, generator=generator) for k in keys}
        state = {k: final[k] + ai * u[k] + bi * v[k] + noise[k] for k in keys}
        state["b.bias"] = final["b.bias"] + 0.5  # 1-D: left out of the PCA by default
        states.append(state)
    directions, ratio, coords = pca_directions(states, final, keys)
    assert abs(dot(directions[0], u)) > 0.999 and abs(dot(directions[1], v)) > 0.99
    assert all(norm(d) == pytest.approx(1.0, rel=1e-5) for d in directions)
    assert float(ratio.sum()) == pytest.approx(1.0, abs=1e-4) and float(ratio[0]) > float(ratio[1])
    sign_u = math.copysign(1.0, dot(directions[0], u))
    torch.testing.assert_close(coords[:, 0].float(), sign_u * a, atol=1e-2, rtol=0)
    assert coords[0, 0] < 0  # oriented so the path runs towards the origin along +x

    plane = pca_plane(states, final, ["a.weight", "b.weight", "b.bias"], labels=[f"e{i}" for i in range(12)],
                      final_label="last")
    assert plane.kind == "pca" and plane.dims == 2 and plane.trajectory.shape == (13, 2)
    assert torch.count_nonzero(plane.trajectory[-1]) == 0 and plane.info["trajectory_labels"][-1] == "last"
    assert "b.bias" not in plane.axes[0]


def test_pca_needs_a_trajectory_that_spans_two_dimensions():
    final = {"w": torch.zeros(3, 3)}
    with pytest.raises(AnalysisError, match="fewer than 2 dimensions"):
        pca_directions([{"w": torch.ones(3, 3)}, {"w": 2 * torch.ones(3, 3)}], final, ["w"])
    with pytest.raises(AnalysisError, match="checkpoints"):
        pca_directions([], final, ["w"])
