"""Section "Runs": one row per run (model, data, seed, final errors) and each run's full settings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reslab.report import files
from reslab.report.html import details_html, paragraph_html, section_html, table_html
from reslab.report.sections._common import percent

TITLE = "Runs"
ORDER = 10

_LONG_LIST = 12  # lists longer than this (class names...) are shortened in the settings table


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    problems = {run: files.run_problems(run) for run in run_dirs}
    runs = [(run, files.read_config(run), files.read_metrics(run)) for run in run_dirs]
    runs = [(run, config, metrics) for run, config, metrics in runs if config or metrics or problems[run]]
    if not runs:
        return None
    rows = []
    for run, config, metrics in runs:
        if problems[run] and not config:
            rows.append([run.name, "unreadable", "–", "–", "–", "–", "–", "–", "–", "–", "–", "–", "–", "–"])
            continue
        name, _ = files.config_model(config)
        data_name, _ = files.dataset_of(config)
        last = metrics[-1] if metrics else {}
        tests = [m["test_error"] for m in metrics if isinstance(m.get("test_error"), (int, float))]
        elapsed = last.get("elapsed_s")
        rows.append([
            run.name, name or "?", files.config_task(config), files.config_variant(config), data_name or "?",
            files.config_value(config, "seed", default="–"), files.config_value(config, "recipe", default="–"),
            last.get("epoch", "–"), last.get("iteration", "–"),
            percent(last.get("train_error")), percent(last.get("test_error")),
            percent(min(tests)) if tests else "–", _loss(last.get("test_loss"), files.config_task(config)),
            _duration(elapsed),
        ])
    headers = ["run", "model", "task", "variant", "data", "seed", "recipe", "epochs", "iterations",
               "final train error", "final test error", "best test error", "final test loss", "training time"]
    body = [paragraph_html("Variant: what joins each block's branch and its input, from the model and its options "
                           "(residual sum, plain: none, highway gate, dense concatenation, rezero scaled sum). "
                           "Errors are each task's: the top-1 error of a classifier, the pixel error (1 − pixel "
                           "accuracy) of a segmenter, the next-character error of a language model; the test loss is "
                           "the mean cross-entropy per image, pixel or character (for a language model also in bits "
                           "per character); final = after the last epoch run so far."),
            table_html(headers, rows)]
    damaged = [(run, reasons) for run, reasons in problems.items() if reasons]
    if damaged:
        body.append(paragraph_html(
            f"{len(damaged)} run(s) could not be read completely and show what could be: "
            + "; ".join(f"{run.name}: {' / '.join(reasons)}" for run, reasons in damaged)))
    for run, config, _ in runs:
        if config:
            body.append(details_html(f"Settings of {run.name} (config.json)",
                                     table_html(["setting", "value"], flatten(config))))
    return section_html(TITLE, "".join(body))


def flatten(config: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """Nested settings as ``[["a.b", "value"], ...]``; long lists are shortened."""
    rows: list[list[str]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(flatten(value, name + ".") if value else [[name, "{}"]])
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value[:_LONG_LIST])
            more = f", … ({len(value)} in all)" if len(value) > _LONG_LIST else ""
            rows.append([name, f"[{shown}{more}]"])
        else:
            rows.append([name, "–" if value is None else str(value)])
    return rows


def _loss(value, task: str) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if task == files.TASK_LANGUAGE_MODEL:
        return f"{value:.3f} nats ({value / math.log(2):.3f} bits/char)"
    return f"{value:.3f}"


def _duration(seconds) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``: short runs in seconds, so none shows as "0.0 min"."""
    if not isinstance(seconds, (int, float)):
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
