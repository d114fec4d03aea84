"""Section "Transfer learning": fine-tuned vs trained from scratch on few images of new classes.

Reads ``EXPERIMENT_DIR/transfer.json`` (written by ``reslab experiment transfer``): one record per
run (``pretrain``, ``finetuned``, ``scratch``) with its classes, images, final and best test errors
and per-epoch curve, and ``gain_points``. The sentence is made from those numbers.
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
from reslab.report.plots import plot_transfer

TITLE = "Transfer learning"
ORDER = 37  # after the experiments that compare architectures
FILE = "transfer.json"


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _accuracy(error: Any) -> float | None:
    return 1 - error if isinstance(error, (int, float)) and math.isfinite(error) else None


def rows(summary: dict[str, Any]) -> list[list[Any]]:
    out = []
    for r in summary.get("records") or []:
        start = "random" if not r.get("init_from") else f"from {Path(str(r['init_from'])).name}"
        lr = r.get("lr")
        lrs = f"{lr:g}" if isinstance(lr, (int, float)) else "–"
        if r.get("head_lr"):
            lrs += f" (head {r['head_lr']:g})"
        out.append([r.get("variant"), ", ".join(r.get("classes") or []), r.get("train_images"), start,
                    r.get("epochs"), lrs, _percent(_accuracy(r.get("final_test_error"))),
                    _percent(_accuracy(r.get("best_test_error"))),
                    _percent(_accuracy(r.get("final_test_flip_error")))])
    return out


def verdict(summary: dict[str, Any]) -> str:
    records = {r.get("variant"): r for r in summary.get("records") or []}
    tuned, scratch = records.get("finetuned") or {}, records.get("scratch") or {}
    a, b = _accuracy(tuned.get("final_test_error")), _accuracy(scratch.get("final_test_error"))
    if a is None or b is None:
        return "The fine-tuned or the scratch run has no test result yet."
    gain = 100 * (a - b)
    images = tuned.get("train_images")
    if gain > 0:
        what = (f"Starting from the network pretrained on {', '.join(summary.get('source_classes') or [])}, "
                f"fine-tuning on {images} images reaches {100 * a:.2f}% test accuracy on the new classes, "
                f"{gain:.2f} points above the same network trained from scratch on the same images "
                f"for the same epochs ({100 * b:.2f}%).")
    else:
        what = (f"Fine-tuning did not help here: {100 * a:.2f}% test accuracy against {100 * b:.2f}% from scratch "
                f"({gain:+.2f} points), on {images} images of the new classes.")
    return what


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    parts = []
    for experiment in experiment_dirs:
        data = files.read_json(Path(experiment) / FILE)
        if isinstance(data, dict) and data.get("experiment") == "transfer" and data.get("records"):
            parts.append((Path(experiment), data))
    if not parts:
        return None
    body = [paragraph_html(
        "Residual networks as pretrained backbones: a network trained on some classes is fine-tuned (new head, "
        "every weight trained, the head at its own learning rate) on a few images of other classes, and "
        "compared with the same architecture trained from random weights on the same images, with the same "
        "epochs and schedule. Both are tested on all test images of the new classes.")]
    for experiment, data in parts:
        settings = [("data", data.get("data")), ("pretraining classes", ", ".join(data.get("source_classes") or [])),
                    ("new classes", ", ".join(data.get("target_classes") or [])),
                    ("images per new class", data.get("per_class")), ("command", data.get("command"))]
        content = [
            definition_list_html([(k, v) for k, v in settings if v not in (None, "")]),
            figure_html(figure_to_png(plot_transfer(data)),
                        "Left: test accuracy on the new classes during fine-tuning and training from scratch. "
                        "Right: final test accuracy of each run on its own classes (the pretrained source on its "
                        "five classes)."),
            table_html(["run", "classes", "train images", "start", "epochs", "lr", "final test acc", "best test acc",
                        "with test-time flips"], rows(data)),
            paragraph_html(verdict(data)),
        ]
        title = experiment.name if len(parts) > 1 else f"Experiment {experiment.name}"
        body.append(subsection_html(title, "".join(content)))
    return section_html(TITLE, "".join(body))
