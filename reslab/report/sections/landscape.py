"""Section "Loss landscape": surfaces of several models side by side on one colour scale (Li et al. 2018).

Reads ``RUN_DIR/analysis/landscape*.npz`` (or ``DIR/landscape*.npz``) written by
``reslab analyze landscape``; landscapes of the same kind (plane, dimensions, split, grid) are
drawn together so residual and plain twins can be compared at a glance. An experiment directory
written by ``reslab experiment landscape`` adds its comparison table (``EXP_DIR/landscape.json``:
test error, loss rises, λmax, λmin, |λmin/λmax|, trace) at the top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reslab.report.files import read_json
from reslab.report.findings import landscape_findings
from reslab.report.html import (
    figure_html,
    figure_to_png,
    note_html,
    paragraph_html,
    section_html,
    subsection_html,
    table_html,
)
from reslab.report.landscape_plots import (
    landscape_kind,
    landscape_label,
    landscape_summary,
    load_landscape,
    loss_scale,
    plot_contours,
    plot_landscape_1d,
    plot_surfaces_3d,
    plot_trajectories,
)

TITLE = "Loss landscape"
ORDER = 50

_PLANE_NAMES = {"random": "Random filter-normalised plane", "pca": "PCA plane of the training trajectory",
                "interp": "Linear interpolation"}


def find_landscapes(run_dirs: list[Path], experiment_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every readable landscape file of the directories (``analysis/`` first), each once."""
    seen: set[Path] = set()
    found = []
    for directory in list(run_dirs) + list(experiment_dirs):
        directory = Path(directory)
        for pattern in ("analysis/landscape*.npz", "landscape*.npz"):
            for path in sorted(directory.glob(pattern)):
                if path.name.endswith(".partial.npz") or path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                data = load_landscape(path)
                if data is not None:
                    data["run"] = directory.name
                    found.append(data)
    return found


def _group_key(data: dict[str, Any]) -> tuple:
    plane = data.get("plane") or {}
    y = data.get("y")
    x = np.asarray(data["x"], dtype=float)
    return (plane.get("kind", "random"), 1 if y is None else 2, (data.get("settings") or {}).get("split", "train"),
            x.size, 0 if y is None else np.asarray(y).size,
            plane.get("from") if plane.get("kind") == "interp" else None,
            plane.get("to") if plane.get("kind") == "interp" else None)


def build(run_dirs: list[Path], experiment_dirs: list[Path]) -> str | None:
    datas = find_landscapes(run_dirs, experiment_dirs)
    if not datas:
        return None
    body = [paragraph_html(
        "Loss (mean cross-entropy, BN in eval mode) on grids of weights around each checkpoint. Random planes use "
        "two Gaussian directions with filter normalisation (every filter of the direction scaled to the norm of the "
        "weight's filter, Li et al. 2018), so a step of 1 moves every filter by its own norm and surfaces of "
        "different networks are comparable; panels of one figure share one logarithmic colour scale. Li et al. found "
        "residual networks' surfaces smooth and nearly convex and their plain twins' chaotic as depth grows; the "
        "sentence under each table says whether this run's residual surface was the flatter one.")]
    incomplete = [d for d in datas if not d.get("complete", True)]
    datas = [d for d in datas if d.get("complete", True)]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for data in datas:
        groups.setdefault(_group_key(data), []).append(data)
    body.extend(_experiment_tables(experiment_dirs))
    # The random plane (the models' comparison) first, then the trajectory, then lines.
    order = {"random": 0, "pca": 1, "interp": 2}
    for key, group in sorted(groups.items(), key=lambda item: (item[0][1] != 2, order.get(item[0][0], 3))):
        group.sort(key=lambda d: (landscape_kind(d) != "residual", landscape_label(d)))
        body.append(subsection_html(_group_title(key, group[0]), _group_html(key, group)))
    if incomplete:
        names = ", ".join(f"{d['run']} ({Path(d['path']).name})" for d in incomplete)
        body.append(note_html(f"Incomplete landscapes left out (rerun the same command to finish them): {names}."))
    return section_html(TITLE, "".join(body))


def _experiment_tables(experiment_dirs: list[Path]) -> list[str]:
    """The comparison table of every ``EXP_DIR/landscape.json`` (``reslab experiment landscape``)."""
    parts = []
    for directory in experiment_dirs:
        summary = read_json(Path(directory) / "landscape.json")
        if not isinstance(summary, dict) or summary.get("experiment") != "landscape":
            continue
        settings = summary.get("settings") or {}
        hessian = settings.get("hessian") or {}
        rows = []
        for model in summary.get("models") or []:
            rows.append([model.get("run", "?"), model.get("model", "?"), model.get("kind", "?"),
                         _pct(model.get("test_error")), _num(model.get("loss_at_origin")),
                         _num(model.get("loss_rise_r0.5")), _num(model.get("loss_rise_r1")),
                         _num(model.get("lambda_max")), _num(model.get("lambda_min")),
                         _num(model.get("convexity_ratio")), _num(model.get("trace"))])
        caption = (f"{Path(directory).name}: {summary.get('dataset', '?')}, surfaces on {settings.get('samples', '?')} "
                   f"{settings.get('split', 'train')} images (grid {settings.get('grid', '?')}, direction seed "
                   f"{settings.get('direction_seed', 0)}, the same for every model). Loss rise r≤R: mean loss within "
                   "distance R of the origin of the random plane minus the loss at the origin (smaller = flatter)."
                   + (f" Curvature from Hessian-vector products on {hessian.get('samples')} images: λmax by "
                      f"{'Lanczos' if hessian.get('top_method') == 'lanczos' else 'power iteration'}, λmin by {hessian.get('extreme_steps')} Lanczos steps, the trace by Hutchinson "
                      f"with {hessian.get('trace_probes')} probes; |λmin/λmax| near 0 = convex-looking."
                      if hessian else ""))
        parts.append(subsection_html(
            f"Residual vs plain: sharpness ({Path(directory).name})",
            table_html(["run", "model", "kind", "test error", "loss at origin", "loss rise r≤0.5", "loss rise r≤1",
                        "λmax", "λmin", "|λmin/λmax|", "trace"], rows, caption=caption)))
    return parts


def _group_title(key: tuple, data: dict[str, Any]) -> str:
    kind, dims, split = key[0], key[1], key[2]
    title = _PLANE_NAMES.get(kind, kind)
    if kind == "interp":
        plane = data.get("plane") or {}
        title += f" {plane.get('from', '?')} → {plane.get('to', '?')}"
    elif dims == 1:
        title += " (1-D)"
    return f"{title}, {split} split"


def _group_html(key: tuple, group: list[dict[str, Any]]) -> str:
    kind, dims = key[0], key[1]
    samples = sorted({(d.get("settings") or {}).get("samples") for d in group} - {None})
    where = f"{', '.join(str(s) for s in samples)} {key[2]} images" if samples else f"{key[2]} images"
    parts = []
    if dims == 1:
        parts.append(figure_html(figure_to_png(plot_landscape_1d(group)),
                                 f"Loss (log scale) and accuracy along the line, on {where}."))
    elif kind == "pca":
        scale = loss_scale(group)
        parts.append(figure_html(figure_to_png(plot_trajectories(group, scale=scale)),
                                 f"Loss contours on the plane of the top-2 PCA directions of each training trajectory, "
                                 f"with the checkpoints projected onto it (axes give the share of the trajectory's "
                                 f"variance each direction explains); {where}; shared log colour scale."))
    else:
        scale = loss_scale(group)
        parts.append(figure_html(figure_to_png(plot_contours(group, filled=True, scale=scale)),
                                 f"Filled contours of the loss on {where}; one log colour scale for all panels "
                                 f"({scale[0]:.3g} to {scale[1]:.3g}; higher values in the top colour)."))
        parts.append(figure_html(figure_to_png(plot_contours(group, filled=False, scale=scale)),
                                 "Contour lines of the same surfaces (same levels)."))
        parts.append(figure_html(figure_to_png(plot_surfaces_3d(group)),
                                 f"The same surfaces in 3-D, clipped at {scale[1]:.3g} (shared z axis)."))
    parts.append(_summary_table(kind, group))
    if kind != "interp":
        findings = landscape_findings(group, [landscape_summary(data) for data in group])
        if findings:
            parts.append(paragraph_html(findings))
    return "".join(parts)


def _summary_table(kind: str, group: list[dict[str, Any]]) -> str:
    rows = []
    for data in group:
        summary = landscape_summary(data)
        target = data.get("target") or {}
        settings = data.get("settings") or {}
        row = [data.get("run") or landscape_label(data), target.get("model", "?"), landscape_kind(data),
               target.get("checkpoint", "?"), settings.get("samples", "?"), _num(summary.get("origin_loss")),
               _pct(summary.get("origin_accuracy"))]
        if kind == "interp":
            row.append(_num(summary.get("barrier")))
        else:
            row += [_num(summary.get("rise@0.25")), _num(summary.get("rise@0.5")), _num(summary.get("rise@1"))]
        row.append(_num(summary.get("max_loss")))
        if kind == "pca":
            ratio = (data.get("plane") or {}).get("explained_variance_ratio") or []
            row.append(" + ".join(f"{100 * r:.1f}%" for r in ratio) or "–")
        rows.append(row)
    headers = ["run", "model", "kind", "checkpoint", "samples", "loss at origin", "accuracy"]
    if kind == "interp":
        headers.append("barrier on [0, 1]")
    else:
        headers += ["mean rise r≤0.25", "r≤0.5", "r≤1"]
    headers.append("max loss")
    if kind == "pca":
        headers.append("variance explained")
    caption = ("Mean rise r≤R: mean loss over the grid points within distance R of the origin minus the loss at the "
               "origin — smaller is flatter." if kind != "interp" else
               "Barrier: highest loss between the two checkpoints minus the higher of the end points.")
    return table_html(headers, rows, caption=caption)


def _num(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{value:.4g}" if np.isfinite(value) else "–"


def _pct(value: Any) -> str:
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return "–"
