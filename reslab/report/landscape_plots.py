"""Plots of loss landscapes and Hessian results, drawn from the saved files only.

Landscapes are read from their ``.npz`` (see ``reslab.analysis.landscape.surface`` for the
format) with :func:`load_landscape`; Hessian results from ``hessian.json`` (+ ``.npz``) with
:func:`reslab.report.files.load_result`. Every ``plot_*`` function takes a *list* of results so
models can be compared side by side; they share one colour scale (log-scaled loss, from the
smallest loss of all to the largest, capped at :data:`LOSS_CAP`) so equal colours mean equal
losses across panels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reslab.report.files import load_result
from reslab.report.plots import KIND_COLORS, new_figure, remove_stale_figures, save_figure, series_colors

#: Losses above this are drawn in the top colour (and clipped in 3-D): a 10-class net at
#: chance has loss ln 10 ≈ 2.3, so 10 keeps the interesting range while diverged points stay visible.
LOSS_CAP = 10.0
LEVELS = 25
CMAP = "viridis"


# -- reading ---------------------------------------------------------------------------------------
def load_landscape(path: str | Path) -> dict[str, Any] | None:
    """A landscape ``.npz`` as a dict: its metadata plus arrays ``x``, ``y`` (None for 1-D),
    ``loss``, ``accuracy``, ``trajectory`` (PCA only) and ``path``; ``None`` if unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(meta, dict) or "loss" not in arrays:
        return None
    data = dict(meta)
    data.update(arrays)
    if data.get("y") is not None and np.asarray(data["y"]).size == 0:
        data["y"] = None
    data["path"] = str(path)
    return data


def landscape_label(data: dict[str, Any]) -> str:
    target = data.get("target") or {}
    label = target.get("label") or target.get("model") or Path(data.get("path", "landscape")).stem
    checkpoint = target.get("checkpoint")
    return f"{label} @ {checkpoint}" if checkpoint and checkpoint not in ("last",) else str(label)


def landscape_kind(data: dict[str, Any]) -> str:
    return str((data.get("target") or {}).get("kind") or "other")


def loss_scale(datas: Sequence[dict[str, Any]], cap: float = LOSS_CAP) -> tuple[float, float]:
    """``(vmin, vmax)`` shared by ``datas``: smallest positive loss, largest (capped) loss."""
    values = np.concatenate([np.asarray(d["loss"], dtype=float).ravel() for d in datas] or [np.zeros(0)])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return 1e-3, 1.0
    vmin = float(values.min())
    vmax = float(min(values.max(), max(cap, vmin * 10)))
    if vmax <= vmin:
        vmax = vmin * 10
    return vmin, vmax


def _axis_labels(data: dict[str, Any]) -> tuple[str, str]:
    plane = data.get("plane") or {}
    kind = plane.get("kind")
    if kind == "pca":
        ratio = plane.get("explained_variance_ratio") or []
        names = [f"PC{i + 1}" + (f" ({100 * r:.1f}% of variance)" if i < len(ratio) else "") for i, r in
                 enumerate(ratio + [None] * (2 - len(ratio)))]
        return names[0], names[1]
    if kind == "interp":
        return f"α: {plane.get('from', 'from')} (0) → {plane.get('to', 'to')} (1)", ""
    seeds = plane.get("seeds") or []
    norm = plane.get("normalization", "filter")
    return (f"direction 1 ({norm}-normalised, seed {seeds[0] if seeds else '?'})",
            f"direction 2 (seed {seeds[1] if len(seeds) > 1 else '?'})")


def _log_levels(vmin: float, vmax: float, count: int = LEVELS) -> np.ndarray:
    return np.geomspace(vmin, vmax, count)


# -- 1-D -------------------------------------------------------------------------------------------
def plot_landscape_1d(datas: Sequence[dict[str, Any]], title: str | None = None):
    """Loss (log scale) and accuracy along the line, every model on the same axes."""
    figure, (ax_loss, ax_acc) = new_figure(2)
    colors = series_colors([{"kind": landscape_kind(d)} for d in datas])
    for data, color in zip(datas, colors):
        x = np.asarray(data["x"], dtype=float)
        loss = np.asarray(data["loss"], dtype=float)
        acc = 100 * np.asarray(data["accuracy"], dtype=float)
        label = landscape_label(data)
        ax_loss.plot(x, np.where(loss > 0, loss, np.nan), color=color, label=label, lw=1.8)
        ax_acc.plot(x, acc, color=color, label=label, lw=1.8)
    xlabel = _axis_labels(datas[0])[0] if datas else ""
    ax_loss.set_yscale("log")
    for ax, ylabel in ((ax_loss, "loss (cross-entropy)"), (ax_acc, "accuracy (%)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if (datas[0].get("plane") or {}).get("kind") == "interp":
            for end in (0.0, 1.0):
                ax.axvline(end, color="0.5", lw=0.8, ls=":")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_loss.set_title("loss along the line", fontsize=11)
    ax_acc.set_title("accuracy along the line", fontsize=11)
    if title:
        figure.suptitle(title)
    return figure


# -- 2-D -------------------------------------------------------------------------------------------
def plot_contours(datas: Sequence[dict[str, Any]], filled: bool = True, title: str | None = None,
                  scale: tuple[float, float] | None = None):
    """Side-by-side 2-D contours (filled or lines) on one shared log colour scale."""
    from matplotlib.colors import LogNorm  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    vmin, vmax = scale or loss_scale(datas)
    levels = _log_levels(vmin, vmax)
    norm = LogNorm(vmin=vmin, vmax=vmax)
    figure, axes = new_figure(len(datas), width=4.6, height=4.0)
    mappable = None
    for ax, data in zip(axes, datas):
        x, y = np.asarray(data["x"], float), np.asarray(data["y"], float)
        z = np.ma.masked_invalid(np.clip(np.asarray(data["loss"], float), vmin, None))
        if filled:
            mappable = ax.contourf(x, y, z, levels=levels, norm=norm, cmap=CMAP, extend="max")
        else:
            mappable = ax.contour(x, y, z, levels=levels, norm=norm, cmap=CMAP, linewidths=1.0)
        ax.plot([0], [0], marker="*", color="white" if filled else "black", ms=9, mec="black", mew=0.6)
        _decorate_2d(ax, data)
    _loss_colorbar(figure, mappable, axes, vmin, vmax)
    if title:
        figure.suptitle(title)
    return figure


def _loss_colorbar(figure, mappable, axes, vmin: float, vmax: float) -> None:
    if mappable is None:
        return
    bar = figure.colorbar(mappable, ax=axes, shrink=0.85, ticks=np.geomspace(vmin, vmax, 6), format="%.3g")
    bar.set_label("loss (log scale, shared)")
    bar.minorticks_off()


def plot_surfaces_3d(datas: Sequence[dict[str, Any]], title: str | None = None,
                     zmax: float | None = None):
    """Side-by-side 3-D loss surfaces, clipped at one shared ``zmax`` (default: the shared scale's top)."""
    from matplotlib import colormaps  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it
    from matplotlib.colors import LogNorm  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    vmin, vmax = loss_scale(datas)
    zmax = zmax or vmax
    figure, axes = new_figure(len(datas), width=4.6, height=4.0, subplot_kw={"projection": "3d"})
    cmap = colormaps[CMAP]
    for ax, data in zip(axes, datas):
        x, y = np.asarray(data["x"], float), np.asarray(data["y"], float)
        xx, yy = np.meshgrid(x, y)
        z = np.clip(np.nan_to_num(np.asarray(data["loss"], float), nan=zmax, posinf=zmax), None, zmax)
        # Faces coloured on the 2-D plots' shared log scale, so colours mean the same losses there.
        ax.plot_surface(xx, yy, np.clip(z, vmin, None), cmap=cmap, norm=LogNorm(vmin=vmin, vmax=zmax), linewidth=0,
                        antialiased=True, rcount=80, ccount=80)
        ax.set_zlim(0, zmax)
        ax.set_title(landscape_label(data), fontsize=10)
        ax.set_xlabel("d1", fontsize=8)
        ax.set_ylabel("d2", fontsize=8)
        ax.set_zlabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.view_init(elev=35, azim=-60)
    if title:
        figure.suptitle(title)
    return figure


def plot_trajectories(datas: Sequence[dict[str, Any]], title: str | None = None,
                      scale: tuple[float, float] | None = None):
    """PCA planes: loss contours with the training trajectory projected on them."""
    from matplotlib.colors import LogNorm  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    vmin, vmax = scale or loss_scale(datas)
    levels = _log_levels(vmin, vmax)
    figure, axes = new_figure(len(datas), width=4.6, height=4.0)
    mappable = None
    for ax, data in zip(axes, datas):
        x, y = np.asarray(data["x"], float), np.asarray(data["y"], float)
        z = np.ma.masked_invalid(np.clip(np.asarray(data["loss"], float), vmin, None))
        mappable = ax.contour(x, y, z, levels=levels, norm=LogNorm(vmin=vmin, vmax=vmax), cmap=CMAP, linewidths=0.9)
        path = data.get("trajectory")
        if path is not None and np.asarray(path).ndim == 2 and np.asarray(path).shape[1] >= 2:
            path = np.asarray(path, float)
            color = KIND_COLORS.get(landscape_kind(data), "black")
            ax.plot(path[:, 0], path[:, 1], "-o", color=color, ms=3.5, lw=1.4, label="trajectory")
            labels = (data.get("plane") or {}).get("trajectory_labels") or []
            for index in {0, len(path) - 1}:
                if index < len(labels):
                    ax.annotate(labels[index], path[index], textcoords="offset points", xytext=(4, 4), fontsize=7)
        _decorate_2d(ax, data)
    _loss_colorbar(figure, mappable, axes, vmin, vmax)
    if title:
        figure.suptitle(title)
    return figure


def _decorate_2d(ax, data: dict[str, Any]) -> None:
    xlabel, ylabel = _axis_labels(data)
    ax.set_title(landscape_label(data), fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_aspect("equal" if (data.get("plane") or {}).get("kind") != "pca" else "auto")


def landscape_figures(path: str | Path) -> list[tuple[str, Any]]:
    """``(file suffix, figure)`` for every plot of one landscape file."""
    data = load_landscape(path)
    if data is None:
        return []
    if data.get("y") is None:
        return [("_curve", plot_landscape_1d([data]))]
    figures = [("_contourf", plot_contours([data], filled=True)), ("_contour", plot_contours([data], filled=False)),
               ("_surface", plot_surfaces_3d([data]))]
    if data.get("trajectory") is not None:
        figures.append(("_trajectory", plot_trajectories([data])))
    return figures


def save_landscape_plots(path: str | Path) -> list[Path]:
    """Draw every plot of the landscape file ``path`` as ``<stem><suffix>.png`` beside it."""
    path = Path(path)
    written = [save_figure(figure, path.with_name(path.stem + suffix + ".png"))
               for suffix, figure in landscape_figures(path)]
    remove_stale_figures(path, LANDSCAPE_FIGURES, written)
    return written


#: Every figure a landscape file can have (which ones depend on its dimension and plane).
LANDSCAPE_FIGURES = ("_curve", "_contourf", "_contour", "_surface", "_trajectory")


# -- summary numbers ---------------------------------------------------------------------------------
def landscape_summary(data: dict[str, Any], radii: Sequence[float] = (0.25, 0.5, 1.0)) -> dict[str, Any]:
    """Numbers read off a landscape: origin loss, mean loss rise within each radius, the barrier.

    ``rise@r`` is the mean loss over grid points at distance ≤ r from the origin minus the
    origin's loss (a flatness measure in the plane's units); for an interpolation, ``barrier``
    is the largest loss on [0, 1] minus the larger end point's.
    """
    loss = np.asarray(data["loss"], dtype=float)
    x = np.asarray(data["x"], dtype=float)
    y = data.get("y")
    origin = data.get("origin_loss")
    origin = float(origin) if origin is not None else float("nan")
    summary: dict[str, Any] = {"origin_loss": origin, "origin_accuracy": data.get("origin_accuracy"),
                               "max_loss": float(np.nanmax(loss)) if np.isfinite(loss).any() else float("nan")}
    if y is None:
        radius = np.abs(x)
    else:
        xx, yy = np.meshgrid(x, np.asarray(y, dtype=float))
        radius = np.hypot(xx, yy)
    plane = (data.get("plane") or {}).get("kind")
    if plane == "interp":
        inside = (x >= 0) & (x <= 1)
        ends = [v for v in (np.interp(0.0, x, loss), np.interp(1.0, x, loss)) if np.isfinite(v)]
        if inside.any() and ends:
            summary["barrier"] = float(np.nanmax(loss[inside]) - max(ends))
        return summary
    for r in radii:
        mask = (radius <= r + 1e-9) & np.isfinite(loss)
        summary[f"rise@{r:g}"] = float(loss[mask].mean() - origin) if mask.any() else float("nan")
    return summary


# -- Hessian -----------------------------------------------------------------------------------------
def plot_hessian_density(results: Sequence[dict[str, Any]], labels: Sequence[str] | None = None,
                         title: str | None = None):
    """Smoothed Hessian eigenvalue densities (SLQ), log density scale, all models on one axes."""
    figure, (ax,) = new_figure(1, width=6.4, height=4.0)
    colors = series_colors([{"kind": (r.get("target") or {}).get("kind")} for r in results])
    for index, (result, color) in enumerate(zip(results, colors)):
        density = result.get("density") or {}
        grid, values = density.get("grid"), density.get("values")
        if grid is None or values is None:
            continue
        label = labels[index] if labels else (result.get("target") or {}).get("label", f"model {index + 1}")
        ax.plot(np.asarray(grid, float), np.maximum(np.asarray(values, float), 1e-12), color=color, lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-6)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (SLQ, Gaussian-smoothed)")
    ax.axvline(0.0, color="0.5", lw=0.8, ls=":")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title(title or "Hessian eigenvalue density", fontsize=11)
    return figure


def plot_hessian_maps(results: Sequence[dict[str, Any]], labels: Sequence[str] | None = None,
                      title: str | None = None):
    """``|λmin/λmax|`` over the plane, side by side on one shared colour scale (0 = convex-looking)."""
    maps = [(i, r.get("map")) for i, r in enumerate(results) if isinstance(r.get("map"), dict)]
    figure, axes = new_figure(max(1, len(maps)), width=4.6, height=4.0)
    ratios = [np.asarray(m["ratio"], float) for _, m in maps if m.get("ratio") is not None]
    finite = np.concatenate([r[np.isfinite(r)].ravel() for r in ratios] or [np.zeros(0)])
    vmax = float(max(finite.max(), 1e-6)) if finite.size else 1.0
    mappable = None
    for ax, (index, data) in zip(axes, maps):
        x, y = np.asarray(data["x"], float), np.asarray(data["y"], float)
        mappable = ax.pcolormesh(x, y, np.ma.masked_invalid(np.asarray(data["ratio"], float)), cmap=CMAP,
                                 vmin=0.0, vmax=vmax, shading="nearest")
        label = labels[index] if labels else (results[index].get("target") or {}).get("label", f"model {index + 1}")
        ax.set_title(str(label), fontsize=10)
        ax.set_xlabel("direction 1", fontsize=8)
        ax.set_ylabel("direction 2", fontsize=8)
        ax.set_aspect("equal")
    if mappable is not None:
        bar = figure.colorbar(mappable, ax=axes, shrink=0.85)
        bar.set_label("|λmin / λmax| (shared scale)")
    if title:
        figure.suptitle(title)
    return figure


def save_hessian_plots(json_path: str | Path) -> list[Path]:
    """Draw ``hessian_density.png`` and ``hessian_map.png`` beside a saved ``hessian.json``."""
    json_path = Path(json_path)
    data = load_result(json_path)
    if data is None:
        return []
    written = []
    if isinstance(data.get("density"), dict) and data["density"].get("values") is not None:
        written.append(save_figure(plot_hessian_density([data]), json_path.with_name(json_path.stem + "_density.png")))
    if isinstance(data.get("map"), dict) and data["map"].get("ratio") is not None:
        written.append(save_figure(plot_hessian_maps([data]), json_path.with_name(json_path.stem + "_map.png")))
    remove_stale_figures(json_path, ("_density", "_map"), written)
    return written

