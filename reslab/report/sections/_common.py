"""Helpers shared by the analysis sections: find result files, name them, render figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from reslab.report import files
from reslab.report.html import (
    figure_html,
    figure_to_png,
    paragraph_html,
    section_html,
    subsection_html,
)


def analysis_results(run_dirs: list[Path], experiment_dirs: list[Path], name: str
                     ) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(directory, result dict)`` for every run (then experiment) directory holding ``<name>.json``."""
    seen: set[Path] = set()
    for directory in list(run_dirs) + list(experiment_dirs):
        path = files.find_result(directory, name)
        if path is None or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        data = files.load_result(path)
        if isinstance(data, dict):
            yield directory, data


def results_section(title: str, intro: str, run_dirs: list[Path], experiment_dirs: list[Path], name: str,
                    one: Callable[[dict[str, Any]], str]) -> str | None:
    """A section of every ``<name>.json`` result: ``intro``, then one subsection per result, ``one(data)``."""
    results = list(analysis_results(run_dirs, experiment_dirs, name))
    if not results:
        return None
    body = [paragraph_html(intro)]
    for directory, data in results:
        body.append(subsection_html(result_heading(directory, data), one(data)))
    return section_html(title, "".join(body))


def result_heading(directory: Path, data: dict[str, Any]) -> str:
    """``run-name — model @ checkpoint``, or the model name for analyses of a fresh model."""
    target = data.get("target") or {}
    label = target.get("label") or directory.name
    checkpoint = target.get("checkpoint")
    # Analyses of several checkpoints (gradients --checkpoints init last) record them all.
    checkpoints = [str(c) for c in target.get("checkpoints") or [] if c]
    name = directory.name if target.get("run_dir") else label
    if name != label:
        name = f"{name} ({label})"
    if len(checkpoints) > 1:
        return f"{name} @ {', '.join(checkpoints)}"
    return f"{name} @ {checkpoint}" if checkpoint and checkpoint != "init" else (
        f"{name}, at initialisation" if checkpoint == "init" else name)


def figure(plot: Callable[..., Any], data: dict[str, Any], caption: str) -> str:
    """Draw ``plot(data)`` and embed it as a PNG figure with ``caption``."""
    return figure_html(figure_to_png(plot(data)), caption)


def percent(value: Any) -> str:
    """A fraction as a percentage with one decimal, ``–`` when missing."""
    return "–" if value is None else f"{100 * float(value):.1f}%"


def sci(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3g}"
