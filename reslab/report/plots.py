"""Every plot of reslab, drawn from saved results (dicts read from JSON), never recomputed.

Each ``plot_*`` function takes the data of one result file (as :func:`reslab.report.files.load_result`
returns it) and returns a matplotlib :class:`~matplotlib.figure.Figure`; :func:`save_figure`
writes it as a PNG atomically and :func:`reslab.report.html.figure_to_png` turns it into bytes
for the HTML report. Figures are made without ``pyplot`` (no global state, no GUI backend): PNGs
are rendered by matplotlib's Agg canvas, so this works headless, in threads, and leaves a
notebook's backend alone.

Conventions: residual networks are blue, plain ones red (shades for several models of a kind);
errors are fractions in the files and percentages on the axes; gradient norms use log scales.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reslab.report.html import figure_to_png
from reslab.store.jsonfiles import natural_key
from reslab.utils import atomic_write_bytes

KIND_COLORS = {"residual": "#1f5fa8", "plain": "#c62828"}
KIND_CMAPS = {"residual": "Blues", "plain": "Reds"}
OTHER_CMAP = "Greens"
PANEL_WIDTH = 5.2
PANEL_HEIGHT = 3.7
#: A per-epoch curve of at most this many points gets a dot at every point as well: one point
#: draws no line at all, and a short line hides which epochs were measured.
FEW_POINTS = 5
#: The two roles of a per-epoch curve, drawn alike in every plot (and named so by :func:`curve_key`).
CURVE_ROLES = {"train": {"ls": "-", "lw": 2.0}, "test": {"ls": "--", "lw": 1.1}}


# -- helpers -------------------------------------------------------------------------------------
def remove_stale_figures(stem_path: Path, suffixes: Sequence[str], written: Sequence[Path]) -> None:
    """Delete ``<stem><suffix>.png`` files a result may have but did not get now (a result's plots
    are written or removed together with its data, so none is left from an earlier computation)."""
    keep = {Path(p).resolve() for p in written}
    for suffix in suffixes:
        path = stem_path.with_name(stem_path.stem + suffix + ".png")
        if path.is_file() and path.resolve() not in keep:
            path.unlink()



def new_figure(panels: int = 1, width: float = PANEL_WIDTH, height: float = PANEL_HEIGHT, rows: int = 1,
               **subplot_kw) -> tuple[Figure, list]:
    """A figure with ``rows × panels`` axes, constrained layout; returns ``(figure, flat list of axes)``."""
    figure = Figure(figsize=(width * panels, height * rows), layout="constrained")
    axes = figure.subplots(rows, panels, squeeze=False, **subplot_kw)
    return figure, [ax for row in axes for ax in row]


def save_figure(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, figure_to_png(figure, dpi=dpi))
    return path


def series_colors(series: Sequence[dict[str, Any]]) -> list:
    """One color per series: blue shades for residual nets, red for plain ones, green otherwise.

    Within a kind, later series get darker shades (e.g. later checkpoints, deeper nets).
    """
    from matplotlib import colormaps  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    by_kind: dict[str, list[int]] = {}
    for index, item in enumerate(series):
        by_kind.setdefault(str(item.get("kind")), []).append(index)
    colors: list = [None] * len(series)
    for kind, indices in by_kind.items():
        if len(indices) == 1 and kind in KIND_COLORS:
            colors[indices[0]] = KIND_COLORS[kind]
            continue
        cmap = colormaps[KIND_CMAPS.get(kind, OTHER_CMAP)]
        shades = np.linspace(0.45, 0.95, len(indices)) if len(indices) > 1 else [0.8]
        for index, shade in zip(indices, shades):
            colors[index] = cmap(float(shade))
    return colors


def _positive(values: Iterable[Any]) -> np.ndarray:
    """Floats with missing, non-finite and non-positive values as NaN (gaps on a log axis)."""
    out = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def _floats(values: Iterable[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _percent(values: Iterable[Any]) -> np.ndarray:
    return 100.0 * _floats(values)


def plot_curve(ax, x, y, color, role: str | None = None, *, ls: str = "-", lw: float = 1.6,
               label: str | None = None, dots: bool | None = None):
    """Draw one per-epoch curve (``x``: epochs or iterations) on ``ax``; every curve plot draws
    through here. ``role`` ``"train"`` or ``"test"`` takes that role's look (:data:`CURVE_ROLES`:
    bold solid, thin dashed), else ``ls``/``lw`` say it. ``dots`` (default: when the curve has at
    most :data:`FEW_POINTS` finite points) puts a dot on every point, filled on a solid line and
    open on any other, so the styles stay told apart where there is too little line to see a
    dash. Returns the ``Line2D``."""
    if role is not None:
        ls, lw = CURVE_ROLES[role]["ls"], CURVE_ROLES[role]["lw"]
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if dots is None:
        dots = int(np.isfinite(y).sum()) <= FEW_POINTS
    marker = {"marker": "o", "ms": 5.5 if ls == "-" else 5.0, "mec": color, "mew": 1.2,
              "mfc": color if ls == "-" else "white"} if dots else {}
    return ax.plot(x, y, ls=ls, lw=lw, color=color, label=label, **marker)[0]


def has_dots(ax) -> bool:
    """Whether a curve on ``ax`` was drawn with dots (for legend entries that must look the same)."""
    return any(line.get_marker() not in (None, "None", "", " ") for line in ax.lines)


def curve_key(test: str = "test") -> str:
    """What a caption says of the curve roles, as :func:`plot_curve` draws them."""
    return (f"bold solid lines = training, thin dashed lines = {test}; a curve of at most {FEW_POINTS} epochs also "
            f"has a dot per epoch, filled for training, open for {test}")


def _finish(ax, title: str, xlabel: str, ylabel: str, legend: bool = True, integer_x: bool = False) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if integer_x:
        # min_n_ticks=1: with the default 2, a one-epoch run's view (0.945-1.055) holds one integer
        # and the locator falls back to fractional ticks.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, framealpha=0.85)


def _highest_line(*axes) -> float:
    """The largest finite y value drawn on ``axes`` (lines and error bars), 1.0 when there is none."""
    highest = 1.0
    for ax in axes:
        for line in ax.lines:
            values = np.asarray(line.get_ydata(), dtype=float)
            if values.size and np.isfinite(values).any():
                highest = max(highest, float(np.nanmax(values[np.isfinite(values)])))
        for collection in ax.collections:  # error bar segments
            for segment in getattr(collection, "get_segments", lambda: [])():
                ys = np.asarray(segment)[:, 1] if len(segment) else np.array([])
                if ys.size and np.isfinite(ys).any():
                    highest = max(highest, float(np.nanmax(ys[np.isfinite(ys)])))
    return highest


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _suptitle(figure: Figure, text: str | None) -> None:
    if text:
        figure.suptitle(text, fontsize=12)


# -- gradients -----------------------------------------------------------------------------------
def plot_gradient_flow(result: dict[str, Any], title: str | None = None) -> Figure:
    """Per-layer gradient norm (left) and update-to-weight ratio (right), log scale, vs layer index.

    result: a ``gradients.json`` result (its ``series``).
    """
    series = [s for s in result.get("series") or [] if s.get("grad_norm")]
    figure, (ax_grad, ax_ratio) = new_figure(2)
    if not series:
        _empty(ax_grad, "no gradient measurements")
        _empty(ax_ratio, "")
        return figure
    colors = series_colors(series)
    for item, color in zip(series, colors):
        layers = np.arange(1, len(item["grad_norm"]) + 1)
        style = "--" if item.get("checkpoint") == "init" and len(series) > 2 else "-"
        ax_grad.plot(layers, _positive(item["grad_norm"]), style, color=color, lw=1.6, marker=".", ms=4,
                     label=item.get("label"))
        ax_ratio.plot(layers, _positive(item.get("update_ratio") or []), style, color=color, lw=1.6, marker=".",
                      ms=4, label=item.get("label"))
    for ax in (ax_grad, ax_ratio):
        ax.set_yscale("log")
    with_lr = all(s.get("lr") is not None for s in series)
    ratio_label = "lr · ‖∂L/∂W‖ / ‖W‖" if with_lr else "‖∂L/∂W‖ / ‖W‖"
    _finish(ax_grad, "Gradient norm per layer", "weight layer (1 = input side)", "‖∂L/∂W‖ (log scale)",
            integer_x=True)
    _finish(ax_ratio, "Update-to-weight ratio" + ("" if with_lr else " (lr unknown)"),
            "weight layer (1 = input side)", ratio_label + " (log scale)", legend=False, integer_x=True)
    _suptitle(figure, title)
    return figure


def plot_classic_gradients(result: dict[str, Any], title: str | None = None) -> Figure:
    """The no-BN deep MLP: per-layer gradient norm of the plain and residual net at initialisation."""
    series = [s for s in result.get("classic") or [] if s.get("grad_norm")]
    settings = result.get("classic_settings") or {}
    figure, (ax,) = new_figure(1, width=7.0, height=4.0)
    if not series:
        _empty(ax, "no classic-case measurement")
        return figure
    notes = []
    for item, color in zip(series, series_colors(series)):
        norms = _floats(item["grad_norm"])
        layers = np.arange(1, len(norms) + 1)
        ax.plot(layers, _positive(norms), color=color, lw=1.8, marker=".", ms=4, label=item.get("label"))
        zeros = np.flatnonzero(norms <= 0)
        if zeros.size:
            notes.append(f"{item.get('kind')}: gradient underflows to 0 up to layer {int(zeros.max()) + 1}")
    ax.set_yscale("log")
    by_kind = {s.get("kind"): _floats(s["grad_norm"]) for s in series}
    if "plain" in by_kind and "residual" in by_kind:
        plain_first, residual_first = by_kind["plain"][0], by_kind["residual"][0]
        if plain_first > 0:
            notes.insert(0, f"first layer: residual / plain = {residual_first / plain_first:.2g}×")
        else:
            notes.insert(0, "first layer: the plain net's gradient is exactly 0")
    if notes:
        # Centre left: above the plain curve's start and below the residual one (both start left).
        ax.text(0.03, 0.42, "\n".join(notes), transform=ax.transAxes, fontsize=9, va="top",
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.9, edgecolor="0.7"))
    depth = settings.get("weight_layers", len(series[0]["grad_norm"]))
    activation = settings.get("activation", "")
    ax.set_xlim(0, len(series[0]["grad_norm"]) + 1)
    _finish(ax, f"Deep MLP without batch norm ({activation}, {depth} weight layers) at initialisation",
            "weight layer (1 = input side)", "‖∂L/∂W‖ (log scale)", integer_x=True)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(0.0, 0.58))
    _suptitle(figure, title)
    return figure


def plot_shattered(result: dict[str, Any], title: str | None = None) -> Figure:
    """Shattered gradients: mean correlation of input gradients vs distance, plus correlation matrices."""
    series = [s for s in result.get("shattered") or [] if s.get("correlation")]
    matrices = [s for s in series if isinstance(s.get("matrix"), np.ndarray)][:3]
    figure, axes = new_figure(1 + len(matrices), width=3.7 if matrices else 5.5, height=3.5)
    ax = axes[0]
    if not series:
        _empty(ax, "no shattered-gradient measurement")
        return figure
    for item, color in zip(series, series_colors(series)):
        ax.plot(_floats(item["distance"]), _floats(item["correlation"]), color=color, lw=1.8, label=item.get("label"))
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.02)
    _finish(ax, "Gradient correlation along a line of inputs", "distance between inputs (fraction of the line)",
            "mean correlation of ∂f/∂x")
    for ax_m, item in zip(axes[1:], matrices):
        image = ax_m.imshow(item["matrix"], vmin=-1, vmax=1, cmap="RdBu_r", origin="lower",
                            extent=(0, 1, 0, 1))
        ax_m.set_title(f"{item.get('label')}: corr(g_s, g_t)", fontsize=10)
        ax_m.set_xlabel("position s on the line")
        ax_m.set_ylabel("position t on the line")
    if matrices:
        figure.colorbar(image, ax=axes[1:], shrink=0.85, label="correlation")
    _suptitle(figure, title)
    return figure


# -- responses -----------------------------------------------------------------------------------
def plot_responses(result: dict[str, Any], title: str | None = None) -> Figure:
    """He et al. Fig. 7: std of each block's residual function, in layer order (left) and sorted (right)."""
    series = [s for s in result.get("series") or [] if s.get("std")]
    figure, (ax_order, ax_sorted) = new_figure(2)
    if not series:
        _empty(ax_order, "no response measurements")
        _empty(ax_sorted, "")
        return figure
    for item, color in zip(series, series_colors(series)):
        std = _floats(item["std"])
        blocks = np.arange(1, len(std) + 1)
        ax_order.plot(blocks, std, color=color, lw=1.6, marker="o", ms=3, label=item.get("label"))
        ordered = np.sort(std[np.isfinite(std)])[::-1]
        ax_sorted.plot(np.arange(1, len(ordered) + 1), ordered, color=color, lw=1.6, marker="o", ms=3,
                       label=item.get("label"))
    for ax in (ax_order, ax_sorted):
        ax.set_ylim(bottom=0)
    _finish(ax_order, "Response of each block (layer order)", "block (1 = input side)", "std of F(x)",
            integer_x=True)
    _finish(ax_sorted, "Responses sorted by magnitude", "rank", "std of F(x)", legend=False, integer_x=True)
    _suptitle(figure, title)
    return figure


# -- lesion --------------------------------------------------------------------------------------
def plot_lesion(result: dict[str, Any], title: str | None = None) -> Figure:
    """Veit et al.: test error with one block removed (left) and with k random blocks removed (right)."""
    series = [s for s in result.get("series") or [] if s.get("blocks")]
    figure, (ax_single, ax_k) = new_figure(2)
    if not series:
        _empty(ax_single, "no lesion measurements")
        _empty(ax_k, "")
        return figure
    for item, color in zip(series, series_colors(series)):
        errors = _percent(item.get("single_block_error") or [])
        blocks = np.arange(1, len(errors) + 1)
        ax_single.plot(blocks, errors, color=color, lw=1.4, marker="o", ms=4, label=f"{item.get('label')}")
        base = item.get("base_error")
        if base is not None:
            ax_single.axhline(100 * base, color=color, lw=1.0, ls="--", alpha=0.8)
        if item.get("k"):
            k = np.array([0] + list(item["k"]), dtype=float)
            mean = np.concatenate([[100 * (base or 0.0)], _percent(item["k_mean_error"])])
            std = np.concatenate([[0.0], _percent(item.get("k_std_error") or [0.0] * len(item["k"]))])
            ax_k.plot(k, mean, color=color, lw=1.6, marker="o", ms=4, label=item.get("label"))
            ax_k.fill_between(k, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    ax_single.plot([], [], color="0.4", ls="--", lw=1.0, label="nothing removed")
    for ax in (ax_single, ax_k):
        ax.set_ylim(0, min(102, max(5.0, 1.08 * _highest_line(ax) + 1)))
    _finish(ax_single, "Test error with one block removed", "removed block (1 = input side)",
            "test error (%)", integer_x=True)
    _finish(ax_k, "Test error with k random blocks removed", "blocks removed (k)", "test error (%), mean ± std",
            legend=True, integer_x=True)
    _suptitle(figure, title)
    return figure


# -- training curves -----------------------------------------------------------------------------
def plot_training_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str | None = None,
                         runs_per_row: int = 2, label_smoothing: dict[str, float] | None = None) -> Figure:
    """Error and loss against epoch for every run: two panels per run, ``runs_per_row`` runs per row.

    runs: ``(label, metrics rows)``; rows are ``metrics.jsonl`` objects (``epoch``, ``train_error``,
    ``test_error``, ``train_loss``, ``test_loss``). Bold = train, thin dashed = test (see
    :func:`plot_curve`, :func:`curve_key`).
    label_smoothing: by run label, the smoothing the *training* loss was measured with (the test
    loss is plain cross-entropy): the loss panel says so, since the two are then not comparable.
    """
    runs = [(label, rows) for label, rows in runs if rows]
    count = max(1, len(runs))
    per_row = max(1, min(runs_per_row, count))
    rows_n = math.ceil(count / per_row)
    figure, axes = new_figure(2 * per_row, width=3.4, height=2.7, rows=rows_n)
    for ax in axes[2 * len(runs):]:
        ax.set_visible(False)
    if not runs:
        axes[0].set_visible(True)
        _empty(axes[0], "no metrics")
        return figure
    for index, (label, rows) in enumerate(runs):
        ax_err, ax_loss = axes[2 * index], axes[2 * index + 1]
        x = _floats(r.get("epoch", i + 1) for i, r in enumerate(rows))
        for role, color in (("train", "#1f5fa8"), ("test", "#e65100")):
            plot_curve(ax_err, x, _percent(r.get(f"{role}_error") for r in rows), color, role, label=role)
            plot_curve(ax_loss, x, _floats(r.get(f"{role}_loss") for r in rows), color, role, label=role)
        ax_err.set_ylim(0, min(102, 1.06 * _highest_line(ax_err) + 0.5))
        losses = _positive([r.get("train_loss") for r in rows] + [r.get("test_loss") for r in rows])
        if np.isfinite(losses).any() and np.nanmax(losses) > 30 * np.nanmin(losses):
            # An early test loss in the thousands (BN statistics of a young net) would flatten the rest.
            ax_loss.set_yscale("log")
        else:
            ax_loss.set_ylim(0, 1.06 * _highest_line(ax_loss))
        _finish(ax_err, f"{label}: error", "epoch", "error (%)", legend=index == 0, integer_x=True)
        smoothing = (label_smoothing or {}).get(label) or 0.0
        loss_title = f"{label}: loss" + (f" (train: label smoothing {smoothing:g})" if smoothing else "")
        _finish(ax_loss, loss_title, "epoch",
                "cross-entropy" + (" (log scale)" if ax_loss.get_yscale() == "log" else ""), legend=False,
                integer_x=True)
    _suptitle(figure, title)
    return figure


# -- degradation ---------------------------------------------------------------------------------
def _degradation_groups(degradation: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in degradation.get("runs") or []:
        try:
            key = (str(run["kind"]), int(run["depth"]))
        except (KeyError, TypeError, ValueError):
            continue
        groups.setdefault(key, []).append(run)
    return groups


def depth_colors(depths: Iterable[int]) -> dict[int, Any]:
    """One distinct color per depth, the same in every panel."""
    from matplotlib import colormaps  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    depths = sorted(set(depths))
    cmap = colormaps["tab10"]
    return {depth: cmap(i % 10) for i, depth in enumerate(depths)}


def _mean_curve(runs: list[dict[str, Any]], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of a per-epoch curve (runs cut to the shortest one)."""
    curves = [(r.get("curve") or {}) for r in runs]
    curves = [c for c in curves if c.get(key) and c.get(x_key)]
    if not curves:
        return np.array([]), np.array([])
    length = min(len(c[key]) for c in curves)
    x = _floats(curves[0][x_key][:length])
    with warnings.catch_warnings():
        # An epoch whose value is NaN in every run (a diverged net) stays NaN: a gap in the line.
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.nanmean(np.stack([_floats(c[key][:length]) for c in curves]), axis=0)
    return x, values


def plot_degradation_curves(degradation: dict[str, Any], title: str | None = None) -> Figure:
    """He et al. 2015, Fig. 6: error vs iteration, plain nets left, residual right; bold train, dashed test.

    degradation: ``EXPERIMENT_DIR/degradation.json`` (see ``docs/analysis.md``). Several seeds of
    one (kind, depth) are averaged.
    """
    groups = _degradation_groups(degradation)
    figure, (ax_plain, ax_res) = new_figure(2, width=5.6, height=4.0, sharey=True)
    colors = depth_colors(depth for _, depth in groups)
    x_key = "iteration" if all((r.get("curve") or {}).get("iteration") for rs in groups.values() for r in rs) else "epoch"
    for (kind, depth), runs in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        ax = ax_plain if kind == "plain" else ax_res
        prefix = "plain" if kind == "plain" else "ResNet"
        seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
        x, train = _mean_curve(runs, "train_error", x_key)
        if x.size:
            plot_curve(ax, x, 100 * train, colors[depth], "train", label=f"{prefix}-{depth}{seeds}")
        x, test = _mean_curve(runs, "test_error", x_key)
        if x.size:
            plot_curve(ax, x, 100 * test, colors[depth], "test")
    highest = _highest_line(ax_plain, ax_res)
    for ax, name in ((ax_plain, "Plain networks"), (ax_res, "Residual networks (ResNets)")):
        if not ax.lines:
            _empty(ax, f"no {name.lower()}")
            continue
        dots = has_dots(ax)
        plot_curve(ax, [], [], "0.3", "train", label="train (bold)", dots=dots)
        plot_curve(ax, [], [], "0.3", "test", label="test (dashed)", dots=dots)
        # Shared y axis set once from both panels' data (autoscaling stops at the first set_ylim).
        ax.set_ylim(0, min(102, 1.06 * highest + 0.5))
        _finish(ax, name, x_key, "error (%)", integer_x=True)
    ax_res.tick_params(labelleft=True)
    _suptitle(figure, title)
    return figure


def plot_error_vs_depth(degradation: dict[str, Any], title: str | None = None) -> Figure:
    """Final train (left) and test (right) error against depth, plain vs residual; error bars = std over seeds."""
    groups = _degradation_groups(degradation)
    figure, (ax_train, ax_test) = new_figure(2, width=4.8, height=3.6)
    if not groups:
        _empty(ax_train, "no runs")
        _empty(ax_test, "")
        return figure
    for ax, key, name in ((ax_train, "final_train_error", "Final training error"),
                          (ax_test, "final_test_error", "Final test error")):
        for kind in ("plain", "residual"):
            depths = sorted(depth for k, depth in groups if k == kind)
            if not depths:
                continue
            means, stds = [], []
            for depth in depths:
                values = _floats(r.get(key) for r in groups[(kind, depth)])
                values = values[np.isfinite(values)]
                means.append(100 * values.mean() if values.size else np.nan)
                stds.append(100 * values.std() if values.size > 1 else 0.0)
            ax.errorbar(depths, means, yerr=stds, color=KIND_COLORS[kind], marker="o", lw=1.8, capsize=3,
                        label="plain" if kind == "plain" else "residual")
        all_depths = sorted({depth for _, depth in groups})
        ax.set_xscale("log")
        ax.set_xticks(all_depths)
        ax.set_xticklabels([str(d) for d in all_depths])
        ax.minorticks_off()
        ax.set_ylim(0, min(102, 1.12 * _highest_line(ax) + 0.5))
        _finish(ax, name, "depth (weight layers, log scale)", "error (%)")
    _suptitle(figure, title)
    return figure


__all__ = [
    "CURVE_ROLES", "FEW_POINTS", "KIND_COLORS", "curve_key", "depth_colors", "has_dots", "natural_key", "new_figure",
    "plot_classic_gradients", "plot_curve", "plot_degradation_curves", "plot_error_vs_depth", "plot_gradient_flow",
    "plot_lesion", "plot_responses", "plot_shattered", "plot_training_curves", "save_figure", "series_colors",
]


# -- transfer learning ----------------------------------------------------------------------------
TRANSFER_COLORS = {"pretrain": "0.45", "finetuned": KIND_COLORS["residual"], "scratch": "#e65100"}


def plot_transfer(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Test accuracy against epoch of the fine-tuned and the scratch run (left) and their final
    accuracies beside the pretrained source's (right), from ``transfer.json``."""
    figure, (ax_curve, ax_bars) = new_figure(2, width=4.6, height=3.3)
    records = [r for r in summary.get("records") or [] if isinstance(r, dict)]
    for record in records:
        variant = str(record.get("variant"))
        if variant == "pretrain":
            continue
        points = [(p.get("epoch"), p.get("test_error")) for p in record.get("curve") or []
                  if isinstance(p.get("test_error"), (int, float))]
        if points:
            plot_curve(ax_curve, [p[0] for p in points], [100 * (1 - p[1]) for p in points],
                       TRANSFER_COLORS.get(variant, "0.3"), label=variant)
    _finish(ax_curve, "new classes: test accuracy", "epoch", "test accuracy (%)", integer_x=True)
    labels, values, colors = [], [], []
    for record in records:
        error = record.get("final_test_error")
        if isinstance(error, (int, float)) and math.isfinite(error):
            variant = str(record.get("variant"))
            labels.append(f"{variant}\n({record.get('train_images') or '?'} images)")
            values.append(100 * (1 - error))
            colors.append(TRANSFER_COLORS.get(variant, "0.3"))
    if values:
        bars = ax_bars.bar(range(len(values)), values, color=colors)
        ax_bars.bar_label(bars, fmt="%.1f", fontsize=8)
        ax_bars.set_xticks(range(len(values)), labels, fontsize=8)
        ax_bars.set_ylim(0, 105)
    else:
        _empty(ax_bars, "no finished runs")
    _finish(ax_bars, "final test accuracy (own classes)", "", "test accuracy (%)", legend=False)
    _suptitle(figure, title)
    return figure
