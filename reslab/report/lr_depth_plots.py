"""The lr-depth experiment's figure, drawn from ``lr_depth.json`` (never recomputed)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reslab.report.plots import KIND_COLORS, _empty, _finish, _suptitle, depth_colors, new_figure

KINDS = ("residual", "plain")
MARKERS = {"residual": "o", "plain": "s"}


def plot_lr_depth(data: dict[str, Any], title: str | None = None) -> Figure:
    """Left: the best peak lr against depth, one line per twin. Middle and right: every trial's final loss
    against its lr (residual nets, plain nets), one colour per depth; open markers: pruned trials (their
    last reported loss), a star: each study's best."""
    records = [r for r in data.get("records") or [] if isinstance(r, dict)]
    figure, axes = new_figure(3)
    metric = data.get("metric", "test_loss")
    ax = axes[0]
    for kind in KINDS:
        rows = sorted((r for r in records if r.get("kind") == kind and isinstance(r.get("best_lr"), (int, float))),
                      key=lambda r: r["depth"])
        if rows:
            plain = kind == "plain"  # dashed and open, so a plain line on top of the residual one shows both
            ax.plot([r["depth"] for r in rows], [r["best_lr"] for r in rows], marker=MARKERS[kind],
                    lw=1.4 if plain else 2.4, ls="--" if plain else "-", ms=8 if plain else 6,
                    mfc="white" if plain else KIND_COLORS[kind], color=KIND_COLORS[kind], label=f"{kind}")
    lr_range = data.get("lr_range")
    if isinstance(lr_range, list) and len(lr_range) == 2:
        ax.set_ylim(lr_range[0] * 0.8, lr_range[1] * 1.25)
    ax.set_yscale("log")
    depths = sorted({int(r["depth"]) for r in records if isinstance(r.get("depth"), int)})
    if depths:
        ax.set_xticks(depths)
    _finish(ax, "best peak lr against depth", "depth (weight layers)", "best peak lr")
    colors = depth_colors(depths)
    for ax, kind in zip(axes[1:], KINDS):
        drawn = False
        for r in sorted((r for r in records if r.get("kind") == kind), key=lambda r: r["depth"]):
            trials = [t for t in r.get("trials") or [] if isinstance(t.get("lr"), (int, float))
                      and isinstance(t.get("final_loss"), (int, float))]
            if not trials:
                continue
            drawn = True
            color = colors[r["depth"]]
            complete = [t for t in trials if t["state"] == "COMPLETE"]
            pruned = [t for t in trials if t["state"] != "COMPLETE"]
            if complete:
                ax.plot([t["lr"] for t in complete], [t["final_loss"] for t in complete], marker=MARKERS[kind],
                        ls="-", lw=1.2, color=color, label=f"{r['model']}")
            if pruned:
                ax.plot([t["lr"] for t in pruned], [t["final_loss"] for t in pruned], ls="none",
                        marker=MARKERS[kind], mfc="white", mec=color, color=color,
                        label=None if complete else f"{r['model']}")
            if isinstance(r.get("best_lr"), (int, float)) and isinstance(r.get("best_value"), (int, float)):
                ax.plot([r["best_lr"]], [r["best_value"]], marker="*", ms=15, color=color, mec="black", ls="none")
        if not drawn:
            _empty(ax, f"no {kind} trials")
            continue
        ax.set_xscale("log")
        values = [t["final_loss"] for r in records if r.get("kind") in KINDS for t in r.get("trials") or []
                  if isinstance(t.get("final_loss"), (int, float))]
        if values and max(values) / max(min(values), 1e-9) > 20:
            ax.set_yscale("log")
        _finish(ax, f"{kind} nets: final {metric} against peak lr", "peak lr", f"final {metric}")
    # Both loss panels on one scale, so the twins compare at a glance.
    lows, highs = zip(*(a.get_ylim() for a in axes[1:]))
    for a in axes[1:]:
        a.set_ylim(min(lows), max(highs))
    _suptitle(figure, title or f"{data.get('dataset')}: best learning rate against depth "
                               f"({data.get('trials')} trials per study)")
    return figure


__all__ = ["plot_lr_depth"]
