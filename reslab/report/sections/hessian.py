"""Section "Curvature": Hessian eigenvalues, trace, spectral density and |λmin/λmax| maps.

Reads ``RUN_DIR/analysis/hessian.json`` (+ ``hessian.npz``) written by ``reslab analyze hessian``.
"""

from __future__ import annotations

from pathlib import Path

from reslab.report.findings import curvature_findings
from reslab.report.html import (
    figure_html,
    figure_to_png,
    paragraph_html,
    section_html,
    table_html,
)
from reslab.report.landscape_plots import plot_hessian_density, plot_hessian_maps
from reslab.report.sections._common import analysis_results, result_heading, sci

TITLE = "Curvature"
ORDER = 52


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    results = list(analysis_results(run_dirs, experiment_dirs, "hessian"))
    if not results:
        return None
    labels = [result_heading(directory, data) for directory, data in results]
    datas = [data for _, data in results]
    body = [paragraph_html(
        "Curvature of the loss at each checkpoint, from exact Hessian-vector products (BN in eval mode). λmax is "
        "the sharpest direction; the trace sums all curvature; |λmin/λmax| is Li et al.'s convexity measure — near 0 "
        "the surface has no significant negative curvature, large values mean saddle-like, non-convex regions.")]
    rows = []
    for label, data in zip(labels, datas):
        target = data.get("target") or {}
        settings = data.get("settings") or {}
        trace = data.get("trace")
        trace_text = "–" if trace is None else f"{trace:.4g} ± {sci(data.get('trace_std_error'))}"
        top = ", ".join(f"{v:.4g}" for v in data.get("top_eigenvalues") or []) or "–"
        rows.append([label, target.get("kind", "?"), settings.get("samples", "?"), sci(data.get("loss")),
                     sci(data.get("lambda_max")), sci(data.get("lambda_min")), sci(data.get("convexity_ratio")),
                     trace_text, top])
    body.append(table_html(["model", "kind", "samples", "loss", "λmax", "λmin", "|λmin/λmax|", "trace (Hutchinson)",
                            "top eigenvalues"], rows))
    findings = curvature_findings(datas)
    if findings:
        body.append(paragraph_html(findings))
    with_density = [(label, data) for label, data in zip(labels, datas)
                    if isinstance(data.get("density"), dict) and data["density"].get("values") is not None]
    if with_density:
        figure = plot_hessian_density([d for _, d in with_density], labels=[lab for lab, _ in with_density])
        body.append(figure_html(figure_to_png(figure),
                                "Eigenvalue density by stochastic Lanczos quadrature (Gaussian-smoothed, log scale). "
                                "Blue: residual, red: plain."))
    with_map = [(label, data) for label, data in zip(labels, datas)
                if isinstance(data.get("map"), dict) and data["map"].get("ratio") is not None]
    if with_map:
        figure = plot_hessian_maps([d for _, d in with_map], labels=[lab for lab, _ in with_map])
        body.append(figure_html(figure_to_png(figure),
                                "|λmin/λmax| over the random filter-normalised plane (the landscape's plane for the "
                                "same seed), one shared colour scale: dark = convex-looking, bright = saddle-like."))
    return section_html(TITLE, "".join(body))
