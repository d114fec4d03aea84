"""Section "Segmentation": U-Net runs (``"task": "segment"``): pixel accuracy and mIoU per epoch,
residual vs plain encoders side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reslab.report import files
from reslab.report.html import (
    details_html,
    figure_html,
    figure_to_png,
    paragraph_html,
    section_html,
    table_html,
)
from reslab.report.sections._common import percent

TITLE = "Segmentation"
ORDER = 25


def _kind(config: dict[str, Any]) -> str:
    kind = config.get("encoder_kind")
    if kind in ("residual", "plain"):
        return kind
    name, options = files.config_model(config)
    return files.config_kind(name, options)


def _runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for run in run_dirs:
        config = files.read_config(run)
        if config.get("task") != "segment":
            continue
        rows = [r for r in files.read_metrics(run) if isinstance(r, dict)]
        runs.append({"run": run, "label": run.name, "config": config, "rows": rows, "kind": _kind(config)})
    return runs


def _best(rows: list[dict[str, Any]]) -> tuple[float | None, Any]:
    scored = [(r["test_miou"], r.get("epoch")) for r in rows if isinstance(r.get("test_miou"), (int, float))]
    return max(scored, key=lambda item: item[0]) if scored else (None, None)


def _group_key(config: dict[str, Any]) -> tuple:
    """Runs that differ only in the model: the same data, options, seed, length and optimizer."""
    return (str(config.get("data")), repr(sorted((config.get("data_options") or {}).items())), config.get("seed"),
            config.get("epochs"), config.get("batch_size"), config.get("optimizer"), config.get("lr"))


def _comparisons(runs: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_group_key(run["config"]), []).append(run)
    for members in groups.values():
        residual = [r for r in members if r["kind"] == "residual"]
        plain = [r for r in members if r["kind"] == "plain"]
        for twin in plain:
            # Prefer the residual run of the same depth (unet_resnet18 for unet_plain18).
            wanted = str(twin["config"].get("model", "")).replace("plain", "resnet")
            match = next((r for r in residual if r["config"].get("model") == wanted), residual[0] if residual else None)
            if match is None or not match["rows"] or not twin["rows"]:
                continue
            a, b = match["rows"][-1].get("test_miou"), twin["rows"][-1].get("test_miou")
            if a is None or b is None:
                continue
            rows.append([match["config"].get("data"), match["label"], twin["label"], match["rows"][-1].get("epoch"),
                         percent(a), percent(b), f"{100 * (a - b):+.1f} points"])
    return rows


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    runs = _runs(run_dirs)
    if not runs:
        return None
    body = [paragraph_html(
        "U-Net runs (reslab train unet_ENCODER --data shapes): the test split's pixel accuracy and mean IoU after "
        "every epoch. mIoU is the confusion-matrix mean of TP / (TP + FP + FN) over the classes that occur in the "
        "masks or the predictions. In the Runs and Training curves sections a segmentation run's error is its pixel "
        "error (1 − pixel accuracy).")]
    summary = []
    for run in runs:
        config, rows = run["config"], run["rows"]
        last = rows[-1] if rows else {}
        best, best_epoch = _best(rows)
        summary.append([run["label"], config.get("model", "?"), config.get("encoder", "–"), run["kind"],
                        config.get("data", "?"), config.get("seed", "–"), last.get("epoch", "–"),
                        percent(last.get("test_pixel_accuracy")), percent(last.get("test_miou")),
                        f"{percent(best)} (epoch {best_epoch})" if best is not None else "–",
                        _seconds(last.get("elapsed_s"))])
    body.append(table_html(["run", "model", "encoder", "encoder kind", "data", "seed", "epochs",
                            "final pixel accuracy", "final mIoU", "best mIoU", "training time"], summary))
    comparisons = _comparisons(runs)
    if comparisons:
        body.append(table_html(["data", "residual run", "plain run", "epochs", "residual mIoU", "plain mIoU",
                                "residual − plain"], comparisons,
                               caption="Residual vs plain encoder: the same data, seed, length and optimizer"))
    drawn = [run for run in runs if run["rows"]]
    if drawn:
        from reslab.report.segmentation_plots import plot_segmentation_curves  # noqa: PLC0415 - lazy: matplotlib
        from reslab.report.plots import FEW_POINTS  # noqa: PLC0415 - lazy: matplotlib, as above

        png = figure_to_png(plot_segmentation_curves(drawn))
        body.append(figure_html(png, "Test mIoU (left), test pixel accuracy (middle) and training loss (right) per "
                                     "epoch; residual encoders solid blue, plain encoders dashed red (runs of at most "
                                     f"{FEW_POINTS} epochs also have a dot per epoch, filled on solid lines, open on "
                                     "dashed ones). Runs: "
                                     + ", ".join(run["label"] for run in drawn) + "."))
    for run in drawn:
        names = run["config"].get("class_names") or []
        last_iou = run["rows"][-1].get("test_iou") or []
        per_class = ", ".join(f"{name} {percent(v)}" for name, v in zip(names, last_iou)) if last_iou else ""
        table = table_html(["epoch", "train loss", "train pixel accuracy", "test loss", "test pixel accuracy",
                            "test mIoU"],
                           [[r.get("epoch", "–"), _number(r.get("train_loss")), percent(r.get("train_pixel_accuracy")),
                             _number(r.get("test_loss")), percent(r.get("test_pixel_accuracy")),
                             percent(r.get("test_miou"))] for r in run["rows"]])
        text = paragraph_html(f"IoU per class after the last epoch: {per_class}.") if per_class else ""
        body.append(details_html(f"Per-epoch metrics of {run['label']}", text + table))
    return section_html(TITLE, "".join(body))


def _number(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.4f}"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"
