"""Section "Gradient flow": per-layer gradient norms, the no-BN classic case, shattered gradients.

Reads ``RUN_DIR/analysis/gradients.json`` (+ ``.npz``) written by ``reslab analyze gradients``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reslab.report.findings import gradient_findings
from reslab.report.html import paragraph_html, section_html, subsection_html, table_html
from reslab.report.plots import (
    plot_classic_gradients,
    plot_gradient_flow,
    plot_shattered,
)
from reslab.report.sections._common import analysis_results, figure, result_heading, sci

TITLE = "Gradient flow"
ORDER = 40


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    results = list(analysis_results(run_dirs, experiment_dirs, "gradients"))
    if not results:
        return None
    body = [paragraph_html(
        "Norm of the loss gradient at every weight layer, from the input side (layer 1) to the classifier. "
        "Without shortcuts it can go wrong two ways: it can vanish toward the input (the classic case of "
        "saturating activations without normalisation) or, in deep plain nets with batch norm, explode toward "
        "the input (Yang et al. 2019; Balduzzi et al. 2017). A shortcut adds an identity path through which "
        "the gradient flows unchanged. The sentences under each figure say which happened in this run.")]
    classic_seen: set[str] = set()
    for directory, data in results:
        body.append(subsection_html(result_heading(directory, data), _one(data, classic_seen)))
    return section_html(TITLE, "".join(body))


def _one(data: dict[str, Any], classic_seen: set[str]) -> str:
    parts = []
    series = data.get("series") or []
    settings = data.get("settings") or {}
    if series:
        parts.append(figure(plot_gradient_flow, data,
                            f"Left: ‖∂L/∂W‖ per weight layer (log scale) on {settings.get('samples', '?')} training "
                            "samples (images, images with masks or text windows, by the run's task), normalisation "
                            "layers in training mode. Right: the relative size of an SGD step, lr·‖g‖/‖W‖ "
                            "(‖g‖/‖W‖ where the learning rate is unknown). Blue: residual, red: plain; darker "
                            "shades: later checkpoints."))
        rows = [[s.get("label"), s.get("kind"), s.get("checkpoint"), sci(_at(s, 0)), sci(_at(s, -1)),
                 sci(_ratio(s)), sci(s.get("loss"))] for s in series]
        parts.append(table_html(["model", "kind", "checkpoint", "‖g‖ first layer", "‖g‖ last layer",
                                 "first / last", "loss"], rows))
        findings = gradient_findings(series, with_bn=True)
        if findings:
            parts.append(paragraph_html(findings))
    classic_key = json.dumps([data.get("classic_settings"), [s.get("grad_norm") for s in data.get("classic") or []]],
                             sort_keys=True, default=str)
    if data.get("classic") and classic_key in classic_seen:
        parts.append(paragraph_html("The classic no-BN case measured with this run is the same as shown above."))
    elif data.get("classic"):
        classic_seen.add(classic_key)
        parts.append(figure(plot_classic_gradients, data,
                            "The classic case without batch norm: a deep MLP, plain h ← act(Wh + b) vs residual "
                            "h ← h + act(Wh + b), same weights, classic U(−1/√n, 1/√n) initialisation."))
        findings = gradient_findings(data["classic"], with_bn=False)
        if findings:
            parts.append(paragraph_html(findings))
    if data.get("shattered"):
        parts.append(figure(plot_shattered, data,
                            "Shattered gradients (Balduzzi et al. 2017): correlation between input gradients "
                            "∂f/∂x at points of a straight line between two test images, as a function of their "
                            "distance. Balduzzi et al. found the gradients of deep plain nets decorrelate faster (towards white noise) "
                            "than those of residual nets."))
    return "".join(parts) or paragraph_html("The result file holds no measurements.")


def _at(series: dict[str, Any], index: int):
    values = series.get("grad_norm") or []
    return values[index] if values else None


def _ratio(series: dict[str, Any]):
    first, last = _at(series, 0), _at(series, -1)
    return first / last if first is not None and last else None
