"""Build the self-contained HTML report from run and experiment directories.

Sections are modules in :mod:`reslab.report.sections` (see the contract in ARCHITECTURE.md):
each defines ``TITLE``, ``ORDER`` and ``build(run_dirs, experiment_dirs) -> str | None``. They
are discovered, called in ``ORDER`` and the fragments they return are joined into one HTML file
with inline CSS and base64-embedded PNGs, written atomically. A section whose files are absent
returns ``None`` and is left out; a section that fails is replaced by a visible warning, so one
corrupt file does not cost the whole report.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import pkgutil
import platform
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Sequence

import numpy
import torch

import reslab.report.sections as package
from reslab import __version__
from reslab.errors import ConfigError
from reslab.report import files
from reslab.report.html import (
    definition_list_html,
    escape,
    note_html,
    page_html,
    section_html,
)
from reslab.store import check_output_file
from reslab.store.jsonfiles import natural_key
from reslab.utils import atomic_write_text

DEFAULT_TITLE = "reslab report"


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the file, the sections built, those skipped, and problems met.

    ``sections`` are the sections built from their files; ``skipped`` those whose files were there
    but could not be built (the report shows a warning in their place, ``warnings`` says why).
    """

    path: Path
    sections: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)
    experiment_dirs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def collect_dirs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split ``paths`` into run directories and experiment directories.

    An experiment directory (one holding run directories) contributes itself and its runs; a run
    directory (``config.json``, ``metrics.jsonl``, ``analysis/`` or analysis result files) itself;
    a directory of such directories (e.g. ``demo/``, or ``analysis/`` of several models) each of
    them. Order is kept and duplicates are dropped.
    """
    if not paths:
        raise ConfigError("reslab report needs at least one PATH: a run directory or an experiment directory")
    run_dirs: list[Path] = []
    experiment_dirs: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ConfigError(f"report input {path} does not exist; pass run directories (written by `reslab train` "
                              "or an analysis --out) or experiment directories")
        if not path.is_dir():
            raise ConfigError(f"report input {path} is a file; pass its directory (a run or experiment directory)")
        if _is_experiment(path):
            if path not in experiment_dirs:
                experiment_dirs.append(path)
            for run in files.experiment_runs(path):
                if run not in run_dirs:
                    run_dirs.append(run)
        elif files.is_result_dir(path):
            if path not in run_dirs:
                run_dirs.append(path)
        elif _child_inputs(path):
            # A folder of experiments or of analysis outputs (e.g. demo/): take each child.
            child_runs, child_experiments = collect_dirs(_child_inputs(path))
            run_dirs.extend(r for r in child_runs if r not in run_dirs)
            experiment_dirs.extend(e for e in child_experiments if e not in experiment_dirs)
        else:
            raise ConfigError(
                f"report input {path} is neither a run directory (config.json, metrics.jsonl or analysis results) "
                "nor an experiment directory (subdirectories that are runs)"
            )
    return run_dirs, experiment_dirs


def _is_experiment(path: Path) -> bool:
    """Holds run directories, or an experiment's summary file (``transformer.json`` …) without them."""
    return files.is_experiment_dir(path) or files.has_experiment_summary(path)


def _child_inputs(path: Path, depth: int = 2) -> list[Path]:
    """Subdirectories (up to ``depth`` levels down) that are, or hold, runs and experiments."""
    if depth <= 0:
        return []
    children = [c for c in path.iterdir() if c.is_dir() and (_is_experiment(c) or files.is_result_dir(c)
                                                             or _child_inputs(c, depth - 1))]
    return sorted(children, key=lambda c: natural_key(c.name))


def discover_sections() -> list[ModuleType]:
    """The section modules of :mod:`reslab.report.sections`, sorted by ``(ORDER, name)``.

    Modules whose names start with ``_`` are helpers, not sections.
    """

    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "build") and hasattr(module, "TITLE"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def _anchor(module: ModuleType) -> str:
    """The id ``section_html(TITLE, ...)`` gives a section by default, so the contents can link to it."""
    return str(module.TITLE).lower().replace(" ", "-")


def build_report(paths: Sequence[str | Path], output: str | Path, title: str | None = None) -> ReportResult:
    """Write the HTML report of ``paths`` (run and/or experiment directories) to ``output``."""
    files.start_report()

    # A report is drawn from saved files and made again at will: an existing one is replaced.
    output = check_output_file(output, "-o", force=True, example="report.html")
    run_dirs, experiment_dirs = collect_dirs(paths)
    result = ReportResult(path=output, run_dirs=run_dirs, experiment_dirs=experiment_dirs)
    built: list[tuple[str, str, str]] = []
    for module in discover_sections():
        name = str(module.TITLE)
        try:
            fragment = module.build(list(run_dirs), list(experiment_dirs))
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the whole report
            message = f"section {name!r} could not be built: {type(exc).__name__}: {exc}"
            result.warnings.append(message)
            result.skipped.append(name)
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            fragment = section_html(name, note_html(f"This section could not be built ({detail}).", "warning"),
                                    anchor=_anchor(module))
        if fragment:
            built.append((_anchor(module), name, fragment))
            if name not in result.skipped:
                result.sections.append(name)
    title = title or DEFAULT_TITLE
    html = page_html(title, _header(run_dirs, experiment_dirs), built, footer=_footer())
    atomic_write_text(output, html)
    return result


def _header(run_dirs: list[Path], experiment_dirs: list[Path]) -> str:
    import matplotlib  # noqa: PLC0415 - lazy: matplotlib is slow to import and only drawing needs it

    sources = data_sources(run_dirs, experiment_dirs)
    now = _dt.datetime.now().astimezone().replace(microsecond=0)
    items = [
        ("created", now.strftime("%Y-%m-%d %H:%M %Z").strip()),
        ("software", f"reslab {__version__}, torch {torch.__version__}, python {platform.python_version()}, "
                     f"numpy {numpy.__version__}, matplotlib {matplotlib.__version__}"),
        ("data", "; ".join(sources) if sources else "not recorded"),
        ("inputs", ", ".join(str(p) for p in experiment_dirs + [r for r in run_dirs if r.parent not in experiment_dirs])
         or "none"),
        ("runs", str(len(run_dirs))),
    ]
    return definition_list_html(items)


def _footer() -> str:
    return escape("Made by `reslab report` from the saved run and analysis files; every figure is embedded, "
                  "so this file can be read offline and shared as is.")


def data_sources(run_dirs: list[Path], experiment_dirs: list[Path]) -> list[str]:
    """Distinct ``name (source)`` of the data every run, analysis and experiment recorded."""
    seen: list[str] = []

    def add(name, source):
        if not name and not source:
            return
        text = f"{name} ({source})" if name and source and source != name else str(name or source)
        if text not in seen:
            seen.append(text)

    for run in run_dirs:
        config = files.read_config(run)
        if config:
            add(*files.dataset_of(config))
        for analysis in ("gradients", "responses", "lesion"):
            found = files.find_result(run, analysis)
            data = files.read_json(found) if found else None
            if isinstance(data, dict) and isinstance(data.get("target"), dict):
                add(data["target"].get("dataset"), data["target"].get("data_source"))
    for experiment in experiment_dirs:
        for summary in ("degradation.json", "lr_depth.json"):
            data = files.read_json(experiment / summary)
            if isinstance(data, dict):
                add(data.get("dataset"), data.get("data_source"))
    return seen
