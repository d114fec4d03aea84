"""Section "Training curves": train/test error and loss per epoch of every run (metrics.jsonl)."""

from __future__ import annotations

from pathlib import Path

from reslab.report import files
from reslab.report.html import figure_html, figure_to_png, section_html
from reslab.report.plots import curve_key, plot_training_curves

TITLE = "Training curves"
ORDER = 20

#: Runs per figure: more would make one very tall image; later runs go to further figures.
RUNS_PER_FIGURE = 8


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    runs = [(run.name, files.read_metrics(run)) for run in run_dirs]
    runs = [(name, rows) for name, rows in runs if rows]
    if not runs:
        return None
    smoothing = {run.name: float(files.config_value(files.read_config(run), "label_smoothing", default=0.0) or 0.0)
                 for run in run_dirs}
    body = []
    for start in range(0, len(runs), RUNS_PER_FIGURE):
        chunk = runs[start:start + RUNS_PER_FIGURE]
        png = figure_to_png(plot_training_curves(chunk, label_smoothing=smoothing))
        names = ", ".join(name for name, _ in chunk)
        smoothed = sorted({smoothing[name] for name, _ in chunk if smoothing.get(name)})
        with_smoothing = [name for name, _ in chunk if smoothing.get(name)]
        note = (f" The training loss of {', '.join(with_smoothing)} includes label smoothing "
                f"({', '.join(f'{s:g}' for s in smoothed)}), so it lies above the plain cross-entropy of the test "
                "loss; `reslab eval --split train` gives the unsmoothed training loss." if smoothed else "")
        body.append(figure_html(png, f"Error (left of each pair: top-1, pixel or next-character error by the "
                                     f"run's task) and cross-entropy loss (right: per image, pixel or character, in "
                                     f"nats) per epoch: "
                                     f"{curve_key()}. Training is measured during the epoch.{note} "
                                     f"Runs: {names}."))
    return section_html(TITLE, "".join(body))
