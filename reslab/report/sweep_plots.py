"""Figures of the "beyond CNNs" sweeps (transformer, rnn, mlp, dropout, family), drawn from their
summary files ``EXP_DIR/<name>.json`` (a dict with ``"records"``, one per run), never recomputed.

Every record field but ``name``/``model``/``variant``/``residual``/``depth`` and the two final
losses may be missing or ``null`` (a run not finished yet): the figures leave it out, they never
fail on it. The helpers that read records (:func:`number`, :func:`depth_groups`, ...) are shared
with :mod:`reslab.report.sections.beyond_cnns`, so the tables, the sentences and the figures
group runs the same way.

Conventions as in :mod:`reslab.report.plots`: residual blue, plain red (other variants their own
colour); bold = training, dashed = validation (with dots on short curves:
:func:`reslab.report.plots.plot_curve`); gradient norms and rank collapse on log scales.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from reslab.report.plots import (  # noqa: F401 - the shared look: same layout, titles, empty panels
    KIND_COLORS,
    _empty,
    _finish,
    _suptitle,
    new_figure,
    plot_curve,
    series_colors,
)

VARIANT_ORDER = ("residual", "plain", "rezero", "highway", "dense")
VARIANT_COLORS = {**KIND_COLORS, "rezero": "#2e7d32", "highway": "#6a1b9a", "dense": "#ef6c00"}
OTHER_COLORS = ("#00838f", "#795548", "#ad1457", "#546e7a")
SUB_STYLES = ("o-", "s--", "^:", "d-.")
SUB_FIELDS = ("cell", "norm")  # what splits a depth sweep besides the variant (rnn: cell; mlp: norm)


# -- reading records --------------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """A finite float, or ``None`` for anything else (missing, ``null``, NaN, ±∞, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean(values: Iterable[Any]) -> float | None:
    """Mean of the finite values (seeds of one setting), ``None`` when there is none."""
    finite = [v for v in (number(x) for x in values) if v is not None]
    return sum(finite) / len(finite) if finite else None


def records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in (summary.get("records") or []) if isinstance(r, dict)]


def variant_of(record: dict[str, Any]) -> str:
    variant = record.get("variant")
    if variant:
        return str(variant)
    residual = record.get("residual")
    return "residual" if residual is True else "plain" if residual is False else "unknown"


def depth_of(record: dict[str, Any]) -> int | None:
    depth = number(record.get("depth"))
    return int(depth) if depth is not None else None


def variant_rank(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER), variant)


def variants_present(recs: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({variant_of(r) for r in recs}, key=variant_rank)


def variant_color(variant: str) -> str:
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    return OTHER_COLORS[sum(map(ord, variant)) % len(OTHER_COLORS)]


def sub_fields(recs: Sequence[dict[str, Any]]) -> list[str]:
    """The fields that split a depth sweep besides the variant: ``cell`` whenever recorded (rnn),
    ``norm`` when the records hold more than one (mlp with and without BN)."""
    fields = []
    for name in SUB_FIELDS:
        values = {str(r.get(name)) for r in recs if r.get(name) not in (None, "")}
        if values and (name == "cell" or len(values) > 1):
            fields.append(name)
    return fields


def sub_of(record: dict[str, Any], fields: Sequence[str]) -> tuple[str, ...]:
    return tuple("" if record.get(f) in (None, "") else str(record.get(f)) for f in fields)


def sub_label(sub: tuple[str, ...], fields: Sequence[str]) -> str:
    """``LSTM``, ``batch norm``, ``no norm`` … (empty when the sweep has no such split)."""
    parts = []
    for name, value in zip(fields, sub):
        if not value:
            continue
        if name == "cell":
            parts.append(value.upper())
        elif name == "norm":
            parts.append("no norm" if value == "none" else f"{value} norm")
        else:
            parts.append(f"{name} {value}")
    return ", ".join(parts)


def series_label(variant: str, sub: tuple[str, ...], fields: Sequence[str]) -> str:
    extra = sub_label(sub, fields)
    return f"{variant}, {extra}" if extra else variant


def depth_groups(summary: dict[str, Any]
                 ) -> tuple[list[str], dict[tuple[tuple[str, ...], str], dict[int, list[dict[str, Any]]]]]:
    """``(sub fields, {(sub, variant): {depth: [records (seeds)]}})``, subs then variants in order."""
    recs = records(summary)
    fields = sub_fields(recs)
    groups: dict[tuple[tuple[str, ...], str], dict[int, list[dict[str, Any]]]] = {}
    for record in recs:
        depth = depth_of(record)
        if depth is None:
            continue
        key = (sub_of(record, fields), variant_of(record))
        groups.setdefault(key, {}).setdefault(depth, []).append(record)
    first = {sub: i for i, sub in reversed(list(enumerate(sub_of(r, fields) for r in recs)))}
    ordered = sorted(groups, key=lambda k: (first[k[0]], variant_rank(k[1])))
    return fields, {k: dict(sorted(groups[k].items())) for k in ordered}


def subs_in(groups: dict[tuple[tuple[str, ...], str], Any]) -> list[tuple[str, ...]]:
    """The cells / norms of :func:`depth_groups`, in the order the records first name them."""
    return list(dict.fromkeys(sub for sub, _ in groups))


def unit_label(summary: dict[str, Any]) -> str:
    return str(summary.get("loss_unit") or "loss")


def curve_of(record: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch, values)`` of one per-epoch curve of a record (empty when absent)."""
    curves = record.get("curves") if isinstance(record.get("curves"), dict) else {}
    values = curves.get(key) if isinstance(curves.get(key), list) else []
    epochs = curves.get("epoch") if isinstance(curves.get("epoch"), list) else []
    if not values:
        return np.array([]), np.array([])
    if len(epochs) < len(values):
        epochs = list(epochs) + list(range(len(epochs) + 1, len(values) + 1))
    x = np.array([np.nan if number(e) is None else number(e) for e in epochs[: len(values)]], dtype=float)
    y = np.array([np.nan if number(v) is None else number(v) for v in values], dtype=float)
    return x, y


def profile_of(record: dict[str, Any], field: str, key: str, x_key: str = "layers"
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(layer, value)`` of a per-layer profile (``rank_collapse``, ``gradient_norms``); positive values
    only (NaN elsewhere: gaps on a log axis); empty when absent."""
    profile = record.get(field) if isinstance(record.get(field), dict) else {}
    values = profile.get(key) if isinstance(profile.get(key), list) else []
    if not values:
        return np.array([]), np.array([])
    layers = profile.get(x_key) if isinstance(profile.get(x_key), list) else []
    if len(layers) != len(values):
        layers = list(range(len(values)))
    x = np.array([np.nan if number(v) is None else number(v) for v in layers], dtype=float)
    y = np.array([np.nan if number(v) is None else number(v) for v in values], dtype=float)
    y[~(y > 0)] = np.nan
    return x, y


def _loss_axis(ax, values: np.ndarray) -> None:
    """Log scale when the losses span more than 30×, else from 0."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() > 30 * finite.min():
        ax.set_yscale("log")
    elif finite.size:
        ax.set_ylim(0, 1.08 * finite.max())


def _depth_axis(ax, depths: Sequence[int]) -> None:
    depths = sorted(set(depths))
    if depths and min(depths) > 0 and max(depths) >= 8 * min(depths):
        ax.set_xscale("log")
        ax.minorticks_off()
    if depths:
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])


# -- depth sweeps (transformer, rnn, mlp) ------------------------------------------------------------
def plot_loss_vs_depth(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Final training (left) and validation (right) loss against depth, one line per variant (and cell / norm)."""
    fields, groups = depth_groups(summary)
    figure, axes = new_figure(2, width=4.8, height=3.6)
    subs = subs_in(groups)
    unit = unit_label(summary)
    for ax, key, name in ((axes[0], "final_train_loss", "Final training loss"),
                          (axes[1], "final_val_loss", "Final validation loss")):
        drawn: list[float] = []
        for (sub, variant), by_depth in groups.items():
            depths = list(by_depth)
            values = np.array([np.nan if (m := mean(r.get(key) for r in rs)) is None else m
                               for rs in by_depth.values()], dtype=float)
            if not np.isfinite(values).any():
                continue
            style = SUB_STYLES[subs.index(sub) % len(SUB_STYLES)]
            ax.plot(depths, values, style, color=variant_color(variant), lw=1.8, ms=5,
                    label=series_label(variant, sub, fields))
            drawn.extend(values[np.isfinite(values)])
        if not drawn:
            _empty(ax, "no finished runs")
            continue
        _depth_axis(ax, [d for by_depth in groups.values() for d in by_depth])
        _loss_axis(ax, np.array(drawn))
        _finish(ax, name, "depth", unit)
    _suptitle(figure, title)
    return figure


def deepest_with(by_depth: dict[int, list[dict[str, Any]]], has) -> tuple[int, dict[str, Any]] | None:
    """The deepest ``(depth, record)`` whose record satisfies ``has``."""
    for depth in sorted(by_depth, reverse=True):
        for record in by_depth[depth]:
            if has(record):
                return depth, record
    return None


def _has_curves(record: dict[str, Any]) -> bool:
    return any(np.isfinite(curve_of(record, k)[1]).any() for k in ("train_loss", "val_loss"))


Panels = list[tuple[tuple[str, ...], int, list[tuple[str, dict[str, Any]]]]]


def deepest_panels(summary: dict[str, Any], has) -> Panels:
    """Per sub (cell / norm): the deepest depth where some record satisfies ``has``, and
    ``(variant, record)`` there for every variant that has one."""
    _, groups = depth_groups(summary)
    panels = []
    for sub in subs_in(groups):
        depths = [d for (s, _), by_depth in groups.items() if s == sub for d, rs in by_depth.items()
                  if any(has(r) for r in rs)]
        if not depths:
            continue
        depth = max(depths)
        lines = [(variant, next(r for r in by_depth[depth] if has(r))) for (s, variant), by_depth in groups.items()
                 if s == sub and any(has(r) for r in by_depth.get(depth, []))]
        panels.append((sub, depth, lines))
    return panels


def curve_panels(summary: dict[str, Any]) -> Panels:
    """Per sub (cell / norm): the deepest depth where some run has curves, and ``(variant, record)`` there."""
    return deepest_panels(summary, _has_curves)


def plot_depth_curves(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Training (bold) and validation (dashed) loss per epoch at the deepest setting, residual vs plain
    (and the other variants); one panel per cell / norm."""
    fields, _ = depth_groups(summary)
    panels = curve_panels(summary)
    figure, axes = new_figure(max(1, len(panels)), width=4.6, height=3.5)
    if not panels:
        _empty(axes[0], "no training curves")
        return figure
    for ax, (sub, depth, lines) in zip(axes, panels):
        drawn = []
        for variant, record in lines:
            color = variant_color(variant)
            for key, role, suffix in (("train_loss", "train", "train"), ("val_loss", "test", "val")):
                x, y = curve_of(record, key)
                if np.isfinite(y).any():
                    plot_curve(ax, x, y, color, role, label=f"{variant} {suffix}")
                    drawn.extend(y[np.isfinite(y)])
        _loss_axis(ax, np.array(drawn))
        extra = sub_label(sub, fields)
        _finish(ax, f"Depth {depth}" + (f", {extra}" if extra else ""), "epoch", unit_label(summary), integer_x=True)
    _suptitle(figure, title)
    return figure


def _has_profile(field: str, key: str):
    return lambda record: np.isfinite(profile_of(record, field, key)[1]).any()


def plot_rank_collapse(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Relative residual (distance from rank 1) against layer, one line per run: at initialisation
    (left, when recorded) and after training (right); log y. Deeper nets are darker shades."""
    runs = sorted((r for r in records(summary) if _has_profile("rank_collapse", "relative_residual")(r)),
                  key=lambda r: (variant_rank(variant_of(r)), depth_of(r) or 0, str(r.get("name"))))
    with_init = any(_has_profile("rank_collapse", "init")(r) for r in runs)
    panels = [("init", "At initialisation")] if with_init else []
    panels.append(("relative_residual", "After training"))
    figure, axes = new_figure(len(panels), width=4.8, height=3.6, sharey=len(panels) > 1)
    if not runs:
        _empty(axes[-1], "no rank-collapse measurements")
        return figure
    colors = series_colors([{"kind": variant_of(r)} for r in runs])
    for ax, (key, name) in zip(axes, panels):
        for record, color in zip(runs, colors):
            x, y = profile_of(record, "rank_collapse", key)
            if np.isfinite(y).any():
                depth = depth_of(record)
                ax.plot(x, y, "o-", color=color, lw=1.6, ms=3,
                        label=f"{variant_of(record)}" + (f", depth {depth}" if depth is not None else ""))
        if not ax.lines:
            _empty(ax, "not recorded")
            continue
        ax.set_yscale("log")
        _finish(ax, name, "layer", "relative residual (log)", integer_x=True)
    if len(axes) > 1:
        axes[1].tick_params(labelleft=True)
    _suptitle(figure, title)
    return figure


def gradient_panels(summary: dict[str, Any]) -> Panels:
    """Per sub (norm): the deepest depth with gradient norms and ``(variant, record)`` there."""
    return deepest_panels(summary, _has_profile("gradient_norms", "norms"))


def plot_gradient_norms(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Gradient norm per weight layer at initialisation (input layer first), deepest depth, residual vs
    plain; log y; one panel per norm."""
    fields, _ = depth_groups(summary)
    panels = gradient_panels(summary)
    figure, axes = new_figure(max(1, len(panels)), width=4.6, height=3.5)
    if not panels:
        _empty(axes[0], "no gradient norms")
        return figure
    for ax, (sub, depth, lines) in zip(axes, panels):
        for variant, record in lines:
            x, y = profile_of(record, "gradient_norms", "norms")
            ax.plot(x, y, "o-", color=variant_color(variant), lw=1.6, ms=3, label=variant)
        ax.set_yscale("log")
        extra = sub_label(sub, fields)
        _finish(ax, f"Depth {depth}" + (f", {extra}" if extra else ""), "weight layer (input first)",
                "gradient norm at init (log)", integer_x=True)
    _suptitle(figure, title)
    return figure


# -- dropout grid ------------------------------------------------------------------------------------
def dropout_grid(summary: dict[str, Any]) -> tuple[list[str], list[float], dict[str, np.ndarray]]:
    """``(row labels, rates, {"final_train_loss": matrix, "final_val_loss": matrix})``; rows = variant
    (with the depth when the grid holds several), columns = dropout rate; NaN where no run is."""
    recs = [r for r in records(summary) if number(r.get("dropout")) is not None]
    depths = {depth_of(r) for r in recs}
    several = len(depths) > 1

    def row(record):
        depth = depth_of(record)
        return variant_of(record) + (f" (depth {depth})" if several and depth is not None else "")

    rows = sorted({row(r) for r in recs}, key=lambda label: (variant_rank(label.split(" ")[0]), label))
    rates = sorted({number(r.get("dropout")) for r in recs})
    matrices = {}
    for key in ("final_train_loss", "final_val_loss"):
        cells: dict[tuple[str, float], list[Any]] = {}
        for record in recs:
            cells.setdefault((row(record), number(record.get("dropout"))), []).append(record.get(key))
        matrix = np.full((len(rows), len(rates)), np.nan)
        for (label, rate), values in cells.items():
            value = mean(values)
            if value is not None:
                matrix[rows.index(label), rates.index(rate)] = value
        matrices[key] = matrix
    return rows, rates, matrices


def plot_dropout_heatmaps(summary: dict[str, Any], title: str | None = None) -> Figure:
    """Final training (left) and validation (right) loss as heat maps: rows = variant, columns = dropout
    rate, each cell annotated (``—``: no finished run)."""
    rows, rates, matrices = dropout_grid(summary)
    figure, axes = new_figure(2, width=max(3.6, 1.0 + 0.9 * len(rates)), height=max(2.4, 1.3 + 0.6 * len(rows)))
    unit = unit_label(summary)
    for ax, key, name in ((axes[0], "final_train_loss", "Final training loss"),
                          (axes[1], "final_val_loss", "Final validation loss")):
        matrix = matrices.get(key)
        if matrix is None or not np.isfinite(matrix).any():
            _empty(ax, "no finished runs")
            continue
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis_r", aspect="auto")
        low, high = np.nanmin(matrix), np.nanmax(matrix)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                value = matrix[i, j]
                if np.isfinite(value):
                    light = high > low and (value - low) / (high - low) > 0.6
                    ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=9,
                            color="white" if light else "black")
                else:
                    ax.text(j, i, "—", ha="center", va="center", fontsize=9, color="0.4")
        ax.set_xticks(range(len(rates)))
        ax.set_xticklabels([f"{r:g}" for r in rates])
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(rows)
        figure.colorbar(image, ax=ax, shrink=0.85, format="%.3g").set_label(unit)
        ax.set_title(name, fontsize=11)
        ax.set_xlabel("dropout rate")
    _suptitle(figure, title)
    return figure


# -- family ------------------------------------------------------------------------------------------
def family_metric(summary: dict[str, Any]) -> tuple[str, str]:
    """``(field, axis label)`` the family is ranked by: validation error when recorded, else validation loss."""
    if any(number(r.get("final_val_error")) is not None for r in records(summary)):
        return "final_val_error", "validation error (%)"
    return "final_val_loss", f"validation loss ({unit_label(summary)})"


def plot_family_bars(summary: dict[str, Any], title: str | None = None) -> Figure:
    """One bar per model: validation error (or loss) left, final training loss right; coloured by variant."""
    recs = records(summary)
    key, label = family_metric(summary)
    figure, axes = new_figure(2, width=max(3.8, 0.9 * len(recs) + 1.5), height=3.6)
    names = [str(r.get("model") or r.get("name") or "?") for r in recs]
    colors = [variant_color(variant_of(r)) for r in recs]
    for ax, field, name, ylabel in ((axes[0], key, "Validation error" if key == "final_val_error"
                                     else "Final validation loss", label),
                                    (axes[1], "final_train_loss", "Final training loss", unit_label(summary))):
        scale = 100.0 if field == "final_val_error" else 1.0
        values = [number(r.get(field)) for r in recs]
        if not any(v is not None for v in values):
            _empty(ax, "no finished runs")
            continue
        heights = [scale * v if v is not None else 0.0 for v in values]
        bars = ax.bar(range(len(recs)), heights, color=colors, edgecolor="0.25", lw=0.6)
        for bar, value in zip(bars, values):
            text = "—" if value is None else (f"{scale * value:.1f}" if scale == 100.0 else f"{value:.3g}")
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8, textcoords="offset points", xytext=(0, 2))
        ax.set_xticks(range(len(recs)))
        ax.set_xticklabels(names, rotation=20 if len(recs) > 3 else 0, ha="right" if len(recs) > 3 else "center")
        ax.set_ylim(0, 1.15 * max(heights) if max(heights) > 0 else 1.0)
        _finish(ax, name, "", ylabel, legend=False)
        ax.grid(False, axis="x")
    _suptitle(figure, title)
    return figure


__all__ = [
    "VARIANT_COLORS", "curve_of", "curve_panels", "depth_groups", "dropout_grid", "family_metric",
    "gradient_panels", "mean", "number", "plot_depth_curves", "plot_dropout_heatmaps", "plot_family_bars",
    "plot_gradient_norms", "plot_loss_vs_depth", "plot_rank_collapse", "profile_of", "records", "series_label",
    "sub_label", "subs_in", "variant_of", "variant_rank", "variants_present",
]
