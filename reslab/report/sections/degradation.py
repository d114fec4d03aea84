"""Section "Degradation": plain vs residual nets of growing depth (He et al. 2015, Fig. 6).

Reads ``EXPERIMENT_DIR/degradation.json`` (format in ``docs/analysis.md``), written by the
degradation experiment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reslab.report import files
from reslab.report.html import (
    definition_list_html,
    figure_html,
    figure_to_png,
    paragraph_html,
    section_html,
    subsection_html,
    table_html,
)
from reslab.report.plots import curve_key, plot_degradation_curves, plot_error_vs_depth

TITLE = "Degradation"
ORDER = 30
FILE = "degradation.json"


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    parts = []
    for experiment in experiment_dirs:
        data = files.read_json(experiment / FILE)
        if not isinstance(data, dict) or not data.get("runs"):
            continue
        parts.append((experiment, data))
    if not parts:
        return None
    intro = paragraph_html(
        "The degradation problem: without shortcuts, deeper networks reach a higher training error than "
        "shallower ones (so it is not overfitting), while residual networks of the same depths keep improving. "
        "Same recipe and seeds for every network; curves are means over seeds.")
    body = [intro]
    for experiment, data in parts:
        content = [definition_list_html(_settings(data)),
                   figure_html(figure_to_png(plot_degradation_curves(data)),
                               "Error during training, plain networks (left) and residual networks (right): "
                               f"{curve_key()}; colours: depth."),
                   figure_html(figure_to_png(plot_error_vs_depth(data)),
                               "Final training (left) and test (right) error against depth. Error bars: "
                               "standard deviation over seeds (when there are several)."),
                   table_html(["kind", "depth", "seeds", "final train error", "final test error", "best test error"],
                              summary_rows(data)),
                   paragraph_html(verdict(data))]
        title = experiment.name if len(parts) > 1 else f"Experiment {experiment.name}"
        body.append(subsection_html(title, "".join(content)))
    return section_html(TITLE, "".join(body))


def _settings(data: dict[str, Any]) -> list[tuple[str, Any]]:
    keys = [("dataset", "data"), ("data_source", "data source"), ("recipe", "recipe"), ("epochs", "epochs"),
            ("seeds", "seeds"), ("budget", "budget"), ("device", "device"), ("command", "command")]
    items = []
    for key, label in keys:
        value = data.get(key)
        if value is not None and value != "":
            items.append((label, ", ".join(map(str, value)) if isinstance(value, list) else value))
    return items


def _groups(data: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in data.get("runs") or []:
        try:
            groups.setdefault((str(run["kind"]), int(run["depth"])), []).append(run)
        except (KeyError, TypeError, ValueError):
            continue
    return dict(sorted(groups.items(), key=lambda item: (item[0][0] != "plain", item[0][1])))


def _mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return mean, std


def _fmt(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.2f}% ± {100 * std:.2f}" if n > 1 else f"{100 * mean:.2f}%"


def summary_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for (kind, depth), runs in _groups(data).items():
        n = len(runs)
        rows.append([kind, depth, n,
                     _fmt(*_mean_std([r.get("final_train_error") for r in runs]), n),
                     _fmt(*_mean_std([r.get("final_test_error") for r in runs]), n),
                     _fmt(*_mean_std([r.get("best_test_error") for r in runs]), n)])
    return rows


def verdict(data: dict[str, Any]) -> str:
    """One sentence on what the numbers show: does the deepest plain net train worse than the shallowest?"""
    groups = _groups(data)
    sentences = []
    for kind in ("plain", "residual"):
        depths = sorted(d for k, d in groups if k == kind)
        if len(depths) < 2:
            continue
        low, _ = _mean_std([r.get("final_train_error") for r in groups[(kind, depths[0])]])
        high, _ = _mean_std([r.get("final_train_error") for r in groups[(kind, depths[-1])]])
        if low is None or high is None:
            continue
        trend = "higher" if high > low else "lower or equal"
        throughout = _epochs_above(groups[(kind, depths[-1])], groups[(kind, depths[0])])
        during = (f"; the deeper net's was the higher at {throughout[0]} of {throughout[1]} epochs"
                  if throughout else "")
        sentences.append(f"{kind} nets: final training error {100 * low:.2f}% at depth {depths[0]} vs "
                         f"{100 * high:.2f}% at depth {depths[-1]} ({trend} when deeper{during})")
    return ("Measured: " + "; ".join(sentences) + ".") if sentences else ""


def _epoch_means(runs: list[dict[str, Any]]) -> dict[int, float]:
    """Training error per epoch, averaged over the runs (seeds) that have it."""
    values: dict[int, list[float]] = {}
    for run in runs:
        curve = run.get("curve") or {}
        for epoch, error in zip(curve.get("epoch") or [], curve.get("train_error") or []):
            if isinstance(epoch, int) and isinstance(error, (int, float)) and math.isfinite(error):
                values.setdefault(epoch, []).append(float(error))
    return {epoch: sum(v) / len(v) for epoch, v in values.items()}


def _epochs_above(deep: list[dict[str, Any]], shallow: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(epochs at which the deeper nets' mean training error is above the shallower's, epochs compared).

    He et al. (2015, Fig. 6) report the deeper plain net's training error above the shallower's
    throughout training, not only at the end; this counts it epoch by epoch.
    """
    deep_means, shallow_means = _epoch_means(deep), _epoch_means(shallow)
    shared = sorted(set(deep_means) & set(shallow_means))
    if len(shared) < 2:
        return None
    return sum(deep_means[e] > shallow_means[e] for e in shared), len(shared)
