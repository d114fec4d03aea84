"""Landscape and curvature plots and report sections, from saved files only."""

from __future__ import annotations

import numpy as np
import pytest

from reslab.analysis.landscape import LandscapeResult
from reslab.report.landscape_plots import (
    landscape_figures,
    landscape_summary,
    load_landscape,
    loss_scale,
    plot_hessian_density,
    plot_hessian_maps,
    save_landscape_plots,
)
from reslab.report.sections import hessian as hessian_section
from reslab.report.sections import landscape as landscape_section


def write_landscape(path, kind: str, scale: float, plane: str = "random", dims: int = 2, complete: bool = True):
    """A paraboloid loss 0.1 + scale·(x² + y²) saved in the landscape format."""
    x = np.linspace(-1, 1, 5)
    y = np.linspace(-1, 1, 5) if dims == 2 else None
    if dims == 2:
        xx, yy = np.meshgrid(x, y)
        loss = 0.1 + scale * (xx ** 2 + yy ** 2)
    else:
        loss = 0.1 + scale * x ** 2
    if not complete:
        loss = loss.copy()
        loss.flat[0] = np.nan
    plane_info = {"kind": plane, "seeds": [0, 1], "normalization": "filter"}
    trajectory = None
    if plane == "pca":
        plane_info.update(explained_variance_ratio=[0.8, 0.15], trajectory_labels=["init", "epoch_1", "last"])
        trajectory = np.array([[-0.8, -0.5], [-0.3, 0.2], [0.0, 0.0]])
    if plane == "interp":
        plane_info.update({"from": "init", "to": "last"})
    result = LandscapeResult(target={"label": f"{kind}net", "model": f"{kind}20", "kind": kind, "checkpoint": "last"},
                             plane=plane_info, x=x, y=y, loss=loss, accuracy=np.full_like(loss, 0.9), origin_loss=0.1,
                             origin_accuracy=0.95, settings={"samples": 64, "split": "train"}, trajectory=trajectory,
                             complete=complete)
    result.save(path)
    return path


def test_summary_numbers_of_a_paraboloid(tmp_path):
    data = load_landscape(write_landscape(tmp_path / "landscape_random_2d.npz", "residual", 2.0))
    summary = landscape_summary(data)
    assert summary["origin_loss"] == pytest.approx(0.1)
    # Within r ≤ 0.5 of a 5×5 grid on [-1, 1]: the origin and its 4 neighbours at distance 0.5.
    assert summary["rise@0.5"] == pytest.approx(2.0 * (4 * 0.25) / 5)
    assert summary["rise@0.25"] == pytest.approx(0.0)
    assert summary["max_loss"] == pytest.approx(0.1 + 2.0 * 2)


def test_plots_of_one_file_and_a_shared_scale(tmp_path):
    path = write_landscape(tmp_path / "a.npz", "residual", 1.0)
    written = save_landscape_plots(path)
    assert sorted(p.name for p in written) == ["a_contour.png", "a_contourf.png", "a_surface.png"]
    assert [s for s, _ in landscape_figures(write_landscape(tmp_path / "b.npz", "plain", 1.0, dims=1))] == ["_curve"]
    assert "_trajectory" in [s for s, _ in landscape_figures(write_landscape(tmp_path / "c.npz", "plain", 1.0, "pca"))]
    flat, sharp = load_landscape(tmp_path / "a.npz"), load_landscape(write_landscape(tmp_path / "d.npz", "plain", 50.0))
    low, high = loss_scale([flat, sharp])
    assert low == pytest.approx(0.1) and high == pytest.approx(10.0)  # capped: equal colours = equal losses
    assert loss_scale([flat]) == pytest.approx((0.1, 2.1))
    assert load_landscape(tmp_path / "missing.npz") is None


def test_landscape_section_compares_models_side_by_side(tmp_path):
    runs = []
    for kind, scale in (("residual", 1.0), ("plain", 20.0)):
        run = tmp_path / f"{kind}20"
        (run / "analysis").mkdir(parents=True)
        write_landscape(run / "analysis" / "landscape_random_2d.npz", kind, scale)
        write_landscape(run / "analysis" / "landscape_interp_init-last.npz", kind, scale, plane="interp", dims=1)
        write_landscape(run / "analysis" / "landscape_pca.npz", kind, scale, plane="pca")
        runs.append(run)
    write_landscape(runs[0] / "analysis" / "landscape_random_1d.npz", "residual", 1.0, dims=1, complete=False)
    html = landscape_section.build(runs, [])
    assert html is not None and html.count("<img") == 3 + 1 + 1  # contourf, contour, 3-D; interp curve; pca
    assert "Random filter-normalised plane" in html and "Linear interpolation init → last" in html
    assert "PCA plane of the training trajectory" in html and "80.0% + 15.0%" in html
    assert "Incomplete landscapes left out" in html and "landscape_random_1d.npz" in html
    assert html.index("residual20") < html.index("plain20")
    assert landscape_section.build([tmp_path / "nothing"], []) is None


def _hessian_result(kind: str, ratio: float) -> dict:
    grid = np.linspace(-1, 3, 50)
    return {"target": {"label": f"{kind}20", "kind": kind}, "settings": {"samples": 32}, "loss": 0.2,
            "lambda_max": 3.0, "lambda_min": -3.0 * ratio, "convexity_ratio": ratio, "trace": 10.0,
            "trace_std_error": 0.5, "top_eigenvalues": [3.0, 2.0],
            "density": {"grid": grid, "values": np.exp(-grid ** 2)},
            "map": {"x": np.linspace(-1, 1, 3), "y": np.linspace(-1, 1, 3), "ratio": np.full((3, 3), ratio)}}


def test_hessian_plots_and_section(tmp_path):
    results = [_hessian_result("residual", 0.01), _hessian_result("plain", 0.4)]
    assert plot_hessian_density(results) is not None and plot_hessian_maps(results) is not None
    from reslab.analysis.hessian import HessianResult

    runs = []
    for kind, ratio in (("residual", 0.01), ("plain", 0.4)):
        run = tmp_path / f"{kind}20"
        data = _hessian_result(kind, ratio)
        HessianResult(target=data["target"], settings=data["settings"], loss=0.2, dim=10, top_eigenvalues=[3.0, 2.0],
                      lambda_max=3.0, lambda_min=-3.0 * ratio, convexity_ratio=ratio, trace=10.0, trace_std_error=0.5,
                      density=data["density"], map=data["map"]).save(run / "analysis" / "hessian.json")
        runs.append(run)
    html = hessian_section.build(runs, [])
    assert html is not None and html.count("<img") == 2 and "0.4" in html and "10 ± 0.5" in html
    assert hessian_section.build([tmp_path / "none"], []) is None
