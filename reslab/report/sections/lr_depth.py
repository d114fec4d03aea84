"""Section "Learning rate and depth": the best peak lr per depth for residual and plain twins.

Reads ``EXPERIMENT_DIR/lr_depth.json``, written by ``reslab experiment lr-depth``.
"""

from __future__ import annotations

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

TITLE = "Learning rate and depth"
ORDER = 32  # after degradation (30)
FILE = "lr_depth.json"


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    parts = []
    for experiment in experiment_dirs:
        data = files.read_json(experiment / FILE)
        if isinstance(data, dict) and data.get("experiment") == "lr-depth" and data.get("records"):
            parts.append((experiment, data))
    if not parts:
        return None
    from reslab.report.lr_depth_text import verdict  # noqa: PLC0415
    from reslab.report.lr_depth_plots import plot_lr_depth  # noqa: PLC0415

    body = [paragraph_html(
        "Is the best learning rate a property of the recipe, or of the depth? One Optuna study per depth and twin "
        "searches the peak learning rate (log-uniform) with every other setting from the recipe; each trial is a "
        "full run, and trials worse than the median at the same epoch are pruned.")]
    for experiment, data in parts:
        metric = data.get("metric", "test_loss")
        rows = []
        for r in sorted(data["records"], key=lambda r: (r.get("kind") != "residual", r.get("depth", 0))):
            trials = r.get("trials") or []
            rows.append([r.get("model"), r.get("kind"), r.get("depth"), _num(r.get("best_lr"), "{:.3g}"),
                         _num(r.get("best_value"), "{:.4f}"), len(trials),
                         sum(1 for t in trials if t.get("state") == "PRUNED"),
                         _range([t.get("lr") for t in trials])])
        content = [
            definition_list_html(_settings(data)),
            table_html(["model", "kind", "depth", "best lr", f"best final {metric}", "trials", "pruned",
                        "lrs tried"], rows),
            figure_html(figure_to_png(plot_lr_depth(data)),
                        f"Left: the best peak lr of each study against depth (a cross: a network that trains at no "
                        f"lr tried, whose 'best' lr is noise). Middle and right: every trial's final {metric} against "
                        "its peak lr (filled: finished trials; open: pruned ones, at their last reported value; "
                        "a triangle on the top edge: a pruned trial whose loss is off the scale, a diverging lr); "
                        "a star marks each study's best; colours: depth."),
            *(paragraph_html(s) for s in verdict(data)),
        ]
        title = experiment.name if len(parts) > 1 else f"Experiment {experiment.name}"
        body.append(subsection_html(title, "".join(content)))
    return section_html(TITLE, "".join(body))


def _num(value: Any, form: str) -> str:
    return form.format(value) if isinstance(value, (int, float)) else "–"


def _range(values: list[Any]) -> str:
    values = [v for v in values if isinstance(v, (int, float))]
    return f"{min(values):.3g} – {max(values):.3g}" if values else "–"


def _settings(data: dict[str, Any]) -> list[tuple[str, Any]]:
    items = []
    for key, label in (("dataset", "data"), ("recipe", "recipe"), ("epochs", "epochs per trial"),
                       ("trials", "trials per study"), ("lr_range", "lr range"), ("sampler", "sampler"),
                       ("pruner", "pruner"), ("command", "command")):
        value = data.get(key)
        if value is not None and value != "":
            items.append((label, " – ".join(map(str, value)) if isinstance(value, list) else value))
    return items
