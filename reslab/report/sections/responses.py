"""Section "Layer responses": std of each residual function's output (He et al. 2015, Fig. 7).

Reads ``RUN_DIR/analysis/responses.json`` written by ``reslab analyze responses``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reslab.report.findings import response_depth_findings, response_findings
from reslab.report.html import paragraph_html, section_html, subsection_html, table_html
from reslab.report.plots import plot_responses
from reslab.report.sections._common import analysis_results, figure, result_heading, sci

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


def _across_depths(results: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The depth comparison within each experiment: only nets of one recipe and budget are compared.

    A run's results sit in its run directory; runs of one experiment share its parent directory.
    """
    groups: dict[Path, list[dict[str, Any]]] = {}
    for directory, data in results:
        groups.setdefault(directory.parent, []).extend(data.get("series") or [])
    findings = [(parent, text) for parent, series in groups.items() if (text := response_depth_findings(series))]
    if len(findings) == 1:
        return [findings[0][1]]
    return [f"In {parent.name}: {text}" for parent, text in findings]


def _one(data: dict[str, Any]) -> str:
    series = data.get("series") or []
    if not series:
        return paragraph_html("The result file holds no measurements.")
    settings = data.get("settings") or {}
    rows = []
    for s in series:
        std = [v for v in s.get("std") or [] if isinstance(v, (int, float)) and math.isfinite(v)]
        rows.append([s.get("label"), s.get("kind"), s.get("checkpoint"), len(std),
                     sci(sum(std) / len(std) if std else None), sci(max(std) if std else None),
                     sci(min(std) if std else None)])
    return (figure(plot_responses, data,
                   f"Std of F(x) per block on {settings.get('samples', '?')} test images (eval mode), in layer order "
                   "(left) and sorted by magnitude (right). Blue: residual, red: plain.")
            + table_html(["model", "kind", "checkpoint", "blocks", "mean std", "max std", "min std"], rows)
            + (paragraph_html(findings) if (findings := response_findings(series)) else ""))
