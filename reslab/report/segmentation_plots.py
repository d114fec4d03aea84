"""Plots of segmentation runs (``"task": "segment"`` in config.json), drawn from their metrics.jsonl.

Residual encoders blue, plain ones red, as in :mod:`reslab.report.plots`; fractions in the files,
percentages on the axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from reslab.report.plots import _finish, _floats, _percent, new_figure, plot_curve, series_colors


def plot_segmentation_curves(runs: Sequence[dict[str, Any]], title: str | None = None) -> Figure:
    """Test mIoU, test pixel accuracy and training loss per epoch, every run on the same axes.

    runs: ``{"label", "kind" ("residual"/"plain"), "rows"}`` with ``rows`` the run's metrics records
    (``epoch``, ``test_miou``, ``test_pixel_accuracy``, ``train_loss``). Plain encoders are dashed;
    short runs get a dot per epoch (:func:`reslab.report.plots.plot_curve`), open on dashed lines.
    """
    figure, (ax_miou, ax_accuracy, ax_loss) = new_figure(3, width=4.2, height=3.2)
    colors = series_colors(runs)
    for run, color in zip(runs, colors):
        rows = run["rows"]
        x = _floats(r.get("epoch", i + 1) for i, r in enumerate(rows))
        style = "--" if run.get("kind") == "plain" else "-"
        label = f"{run['label']} ({run.get('kind', '?')})"
        plot_curve(ax_miou, x, _percent(r.get("test_miou") for r in rows), color, ls=style, lw=1.8, label=label)
        plot_curve(ax_accuracy, x, _percent(r.get("test_pixel_accuracy") for r in rows), color, ls=style, lw=1.8,
                   label=label)
        plot_curve(ax_loss, x, _floats(r.get("train_loss") for r in rows), color, ls=style, lw=1.8, label=label)
    _finish(ax_miou, "test mean IoU", "epoch", "mIoU (%)", integer_x=True)
    _finish(ax_accuracy, "test pixel accuracy", "epoch", "pixel accuracy (%)", legend=False, integer_x=True)
    _finish(ax_loss, "training loss", "epoch", "per-pixel cross-entropy", legend=False, integer_x=True)
    ax_loss.set_ylim(bottom=0)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


__all__ = ["plot_segmentation_curves"]
