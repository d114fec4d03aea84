"""Section "Lesion study": test error with blocks removed at test time (Veit et al. 2016).

Reads ``RUN_DIR/analysis/lesion.json`` written by ``reslab analyze lesion``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reslab.report.findings import lesion_findings
from reslab.report.html import paragraph_html, table_html
from reslab.report.plots import plot_lesion
from reslab.report.sections._common import (
    figure,
    percent,
    results_section,
)

TITLE = "Lesion study"
ORDER = 44
INTRO = (
    "Blocks are removed from a trained network at test time, without retraining: a residual block keeps "
    "its shortcut (only the branch is dropped); a plain block can be removed only where it keeps its "
    "input's shape, and then becomes the identity. Veit et al. (2016) found residual networks degrade "
    "gracefully — they behave like ensembles of many shallower paths — while plain ones collapse.")


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    return results_section(TITLE, INTRO, run_dirs, experiment_dirs, "lesion", _one)


def _one(data: dict[str, Any]) -> str:
    series = data.get("series") or []
    if not series:
        return paragraph_html("The result file holds no measurements.")
    settings = data.get("settings") or {}
    rows = []
    for s in series:
        singles = [v for v in s.get("single_block_error") or [] if v is not None]
        k_mean = s.get("k_mean_error") or []
        rows.append([s.get("label"), s.get("kind"), f"{len(s.get('removable') or [])} of {len(s.get('blocks') or [])}",
                     percent(s.get("base_error")),
                     percent(sum(singles) / len(singles) if singles else None),
                     percent(max(singles) if singles else None),
                     percent(k_mean[-1] if k_mean else None) + (f" (k={s['k'][-1]})" if k_mean else "")])
    caption = (f"Left: test error on {settings.get('samples', '?')} test images with one block removed; dashed "
               "lines: nothing removed. Right: mean test error with k random blocks removed "
               f"({settings.get('draws', '?')} random sets per k, or all sets when there are fewer), band = ± std. "
               "Blue: residual, red: plain.")
    findings = lesion_findings(series)
    return figure(plot_lesion, data, caption) + table_html(
        ["model", "kind", "removable blocks", "error, nothing removed", "mean error, one removed",
         "worst single removal", "error, most removed"], rows) + (paragraph_html(findings) if findings else "")
