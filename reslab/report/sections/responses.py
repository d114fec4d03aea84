"""Section "Layer responses": std of each residual function's output (He et al. 2015, Fig. 7).

Reads ``RUN_DIR/analysis/responses.json`` written by ``reslab analyze responses``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from reslab.report import files
from reslab.report.findings import response_depth_findings, response_findings, response_text
from reslab.report.html import paragraph_html, section_html, subsection_html, table_html
from reslab.report.plots import plot_responses
from reslab.report.sections._common import analysis_results, figure, result_heading

TITLE = "Layer responses"
ORDER = 42
INTRO = (
    "The response of a block is the standard deviation of its residual function F(x) — the branch output "
    "after its last batch norm, before the addition — over test images. He et al. (2015) found residual "
    "functions respond less than the layers of plain nets (they learn small corrections to the identity), and "
    "deeper ResNets less than shallower ones.")


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    results = list(analysis_results(run_dirs, experiment_dirs, "responses"))
    if not results:
        return None
    body = [paragraph_html(" ".join([INTRO, *_across_depths(results)]))]
    for directory, data in results:
        body.append(subsection_html(result_heading(directory, data), _one(data)))
    return section_html(TITLE, "".join(body))


#: The settings that make two nets "trained alike": only such nets are compared across depths.
_BUDGET_KEYS = ("data", "data_options", "recipe", "epochs", "iterations", "batch_size", "lr", "weight_decay",
                "schedule", "label_smoothing", "ema")


def _training_budget(directory: Path, data: dict[str, Any]) -> tuple[str, str]:
    """(what the nets of a result were trained with, a short description of it).

    ``directory`` is the run directory or the folder holding the result; the run's ``config.json``
    is in it or in its parent (a result passed as ``RUN_DIR/analysis``). A fresh model has none.
    """
    checkpoint = str((data.get("target") or {}).get("checkpoint") or "")
    for run_dir in (directory, directory.parent):
        config = files.read_config(run_dir)
        if config:
            budget = {key: config.get(key) for key in _BUDGET_KEYS}
            text = (f"{config.get('recipe') or 'settings'} for {config.get('epochs')} epochs on "
                    f"{config.get('data')}, {checkpoint or 'last'} weights")
            return json.dumps([budget, checkpoint], sort_keys=True, default=str), text
    return json.dumps([None, checkpoint]), f"untrained or outside weights ({checkpoint or 'fresh'})"


def _across_depths(results: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The depth comparison among nets trained alike (same data, recipe, length and checkpoint).

    A ResNet-20 trained 45 epochs is not compared with a ResNet-56 trained 6, wherever their
    directories are.
    """
    groups: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for directory, data in results:
        key, text = _training_budget(directory, data)
        groups.setdefault(key, (text, []))[1].extend(data.get("series") or [])
    findings = [(text, finding) for text, series in groups.values() if (finding := response_depth_findings(series))]
    if len(findings) == 1 and len(groups) == 1:
        return [findings[0][1]]
    return [f"Among the nets trained with {text}: {finding[0].lower()}{finding[1:]}" for text, finding in findings]


def _one(data: dict[str, Any]) -> str:
    series = data.get("series") or []
    if not series:
        return paragraph_html("The result file holds no measurements.")
    settings = data.get("settings") or {}
    rows = []
    for s in series:
        std = [v for v in s.get("std") or [] if isinstance(v, (int, float)) and math.isfinite(v)]
        rows.append([s.get("label"), s.get("kind"), s.get("checkpoint"), len(std),
                     response_text(sum(std) / len(std) if std else None),
                     response_text(max(std) if std else None), response_text(min(std) if std else None)])
    return (figure(plot_responses, data,
                   f"Std of F(x) per block on {settings.get('samples', '?')} test images (eval mode), in layer order "
                   "(left) and sorted by magnitude (right). Blue: residual, red: plain.")
            + table_html(["model", "kind", "checkpoint", "blocks", "mean std", "max std", "min std"], rows)
            + (paragraph_html(findings) if (findings := response_findings(series)) else ""))
