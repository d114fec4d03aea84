"""The lr-depth experiment's figure, drawn from ``lr_depth.json`` (never recomputed)."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from reslab.report.plots import KIND_COLORS, _empty, _finish, _suptitle, depth_colors, new_figure

KINDS = ("residual", "plain")
MARKERS = {"residual": "o", "plain": "s"}


def _finals(record: dict[str, Any], state: str | None = None) -> list[dict[str, Any]]:
    return [t for t in record.get("trials") or [] if isinstance(t.get("lr"), (int, float))
            and isinstance(t.get("final_loss"), (int, float)) and (state is None or t.get("state") == state)]


def plot_lr_depth(data: dict[str, Any], title: str | None = None) -> Figure:
    """Left: the best peak lr against depth, one line per twin (a cross: a network no lr trained, whose
    "best" lr is noise). Middle and right: every trial's final loss against its lr (residual nets, plain
    nets), one colour per depth; open markers: pruned trials at their last reported loss (a triangle on
    the top edge: above the axis, a diverging lr); a star: each study's best."""
    from reslab.report.lr_depth_text import untrained  # noqa: PLC0415

    records = [r for r in data.get("records") or [] if isinstance(r, dict)]
    figure, axes = new_figure(3)
    metric = data.get("metric", "test_loss")
    ax = axes[0]
    for kind in KINDS:
        rows = sorted((r for r in records if r.get("kind") == kind and isinstance(r.get("best_lr"), (int, float))),
                      key=lambda r: r["depth"])
        trained = [r for r in rows if not untrained(r, records)]
        dead = [r for r in rows if untrained(r, records)]
        plain = kind == "plain"  # dashed and open, so a plain line on top of the residual one shows both
        if trained:
            ax.plot([r["depth"] for r in trained], [r["best_lr"] for r in trained], marker=MARKERS[kind],
                    lw=1.4 if plain else 2.4, ls="--" if plain else "-", ms=8 if plain else 6,
                    mfc="white" if plain else KIND_COLORS[kind], color=KIND_COLORS[kind], label=kind)
        if dead:
            ax.plot([r["depth"] for r in dead], [r["best_lr"] for r in dead], ls="none", marker="x", ms=9, mew=2,
                    color=KIND_COLORS[kind], label=f"{kind}: trains at no lr")
    lr_range = data.get("lr_range")
    if isinstance(lr_range, list) and len(lr_range) == 2:
        ax.set_ylim(lr_range[0] * 0.8, lr_range[1] * 1.25)
    ax.set_yscale("log")
    depths = sorted({int(r["depth"]) for r in records if isinstance(r.get("depth"), int)})
    if depths:
        ax.set_xticks(depths)
    _finish(ax, "best peak lr against depth", "depth (weight layers)", "best peak lr")
    colors = depth_colors(depths)
    # One loss scale for both twins, set by the finished trials: diverged (pruned) trials sit on its top edge.
    complete = [t["final_loss"] for r in records for t in _finals(r, "COMPLETE")]
    top = 1.15 * max(complete) if complete else None
    for ax, kind in zip(axes[1:], KINDS):
        drawn = False
        for r in sorted((r for r in records if r.get("kind") == kind), key=lambda r: r["depth"]):
            trials = _finals(r)
            if not trials:
                continue
            drawn = True
            color = colors[r["depth"]]
            done = sorted(_finals(r, "COMPLETE"), key=lambda t: t["lr"])
            pruned = [t for t in trials if t.get("state") != "COMPLETE"]
            label = r["model"] + (" (trains at no lr)" if untrained(r, records) else "")
            if done:
                ax.plot([t["lr"] for t in done], [t["final_loss"] for t in done], marker=MARKERS[kind], ls="-",
                        lw=1.2, color=color, label=label)
            inside = [t for t in pruned if top is None or t["final_loss"] <= top]
            above = [t for t in pruned if top is not None and t["final_loss"] > top]
            if inside:
                ax.plot([t["lr"] for t in inside], [t["final_loss"] for t in inside], ls="none",
                        marker=MARKERS[kind], mfc="white", mec=color, label=None if done else label)
            if above:
                ax.plot([t["lr"] for t in above], [top * 0.985] * len(above), ls="none", marker="^", mfc="white",
                        mec=color, ms=8, label=None if done or inside else label)
            if isinstance(r.get("best_lr"), (int, float)) and isinstance(r.get("best_value"), (int, float)):
                ax.plot([r["best_lr"]], [r["best_value"]], marker="*", ms=15, color=color, mec="black", ls="none")
        if not drawn:
            _empty(ax, f"no {kind} trials")
            continue
        ax.set_xscale("log")
        if top is not None:
            ax.set_ylim(0, top)
        _finish(ax, f"{kind} nets: final {metric} against peak lr", "peak lr", f"final {metric}")
    _suptitle(figure, title or f"{data.get('dataset')}: best learning rate against depth "
                               f"({data.get('trials')} trials per study)")
    return figure


__all__ = ["plot_lr_depth"]
