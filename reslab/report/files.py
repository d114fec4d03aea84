"""Reading what runs, analyses and experiments wrote: the report's only inputs.

The report never imports training or analysis code; it reads their files through
:mod:`reslab.store` (the one reader of each file):

* ``RUN_DIR/config.json`` and ``RUN_DIR/metrics.jsonl`` (the trainer),
* ``RUN_DIR/analysis/<name>.json`` (+ ``<name>.npz``) (the analyses; a directory that holds the
  result files directly, such as the ``--out`` of an analysis of a model name, works too),
* ``EXPERIMENT_DIR/<name>.json`` (experiments, e.g. ``degradation.json``).

A report shows what it can: the readers here return ``None``/``{}``/``[]`` for a missing or
damaged file (so its section is skipped) and say on stderr what was damaged. A run still
training may end its ``metrics.jsonl`` in a partial line: it is skipped, with a warning.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from reslab.errors import ReslabError
from reslab.store import jsonfiles, results, rundir
from reslab.store.rundir import (  # noqa: F401 - the report's view of a run's config, re-exported for sections
    ANALYSIS_DIRNAME,
    TASK_LANGUAGE_MODEL,
    config_kind,
    config_model,
    config_source,
    config_task,
    config_value,
    config_variant,
    experiment_runs,
    is_experiment_dir,
)


_SAID: set[str] = set()


def _skip(reason: ReslabError) -> None:
    """One line on stderr per damaged file (several sections may read the same one)."""
    if str(reason) not in _SAID:
        _SAID.add(str(reason))
        print(f"reslab report: skipped: {reason}", file=sys.stderr)


def start_report() -> None:
    """Forget which damaged files were reported: each report says so once for each."""
    _SAID.clear()


def read_json(path: str | Path) -> Any:
    """The parsed JSON file, ``None`` when it is missing; ``None`` and a line on stderr when it is damaged."""
    if not Path(path).is_file():
        return None
    try:
        return jsonfiles.read_json(path)
    except ReslabError as exc:
        _skip(exc)
        return None


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json``, or ``{}`` (with a line on stderr if it exists but cannot be read)."""
    if not (Path(run_dir) / rundir.CONFIG_FILE).is_file():
        return {}
    try:
        return rundir.read_config(run_dir)
    except ReslabError as exc:
        _skip(exc)
        return {}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's per-epoch records (a run still training may be read: its partial last line is skipped)."""
    try:
        return rundir.read_metrics(run_dir, partial_ok=True)
    except ReslabError as exc:
        _skip(exc)
        return []


def run_problems(run_dir: str | Path) -> list[str]:
    """Why the run's own files cannot be read (``[]`` when they can): a damaged ``config.json`` or
    ``metrics.jsonl``. The report lists such runs with the reason instead of leaving them out."""
    problems = []
    if (Path(run_dir) / rundir.CONFIG_FILE).is_file():
        try:
            rundir.read_config(run_dir)
        except ReslabError as exc:
            problems.append(str(exc))
    try:
        rundir.read_metrics(run_dir, partial_ok=True)
    except ReslabError as exc:
        problems.append(str(exc))
    return problems


def find_result(directory: str | Path, name: str) -> Path | None:
    """``DIR/analysis/<name>.json`` or ``DIR/<name>.json``, whichever exists first, else ``None``."""
    directory = Path(directory)
    for candidate in (directory / ANALYSIS_DIRNAME / f"{name}.json", directory / f"{name}.json"):
        if candidate.is_file():
            return candidate
    return None


def load_result(path: str | Path) -> dict[str, Any] | None:
    """A result JSON with its arrays put back from the ``.npz`` beside it; ``None`` if unreadable.

    An array missing from the ``.npz`` comes back as ``None`` (the plots that need it are skipped).
    """
    try:
        return results.read_result(path, missing_arrays="none")
    except ReslabError as exc:
        _skip(exc)
        return None


def is_result_dir(path: str | Path) -> bool:
    """A directory the report can show: a run directory, or one an analysis wrote its results into.

    An ``analysis/`` subfolder alone does not make one (a parent of ``analysis/MODEL`` folders is not).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if rundir.is_run_dir(path) or (path / rundir.METRICS_JSONL).is_file():
        return True
    return any(_is_analysis_result(p) for p in path.glob("*.json"))


def has_experiment_summary(path: str | Path) -> bool:
    """A directory holding an experiment's summary file (``<name>.json`` with ``"experiment"`` and
    ``"records"``, e.g. ``transformer.json``), even without its run directories."""
    path = Path(path)
    if not path.is_dir():
        return False
    for candidate in path.glob("*.json"):
        try:
            data = jsonfiles.read_json(candidate)
        except ReslabError:
            continue
        if isinstance(data, dict) and isinstance(data.get("experiment"), str) and isinstance(data.get("records"), list):
            return True
    return False


def _is_analysis_result(path: Path) -> bool:
    try:
        data = jsonfiles.read_json(path)
    except ReslabError:
        return False
    return isinstance(data, dict) and isinstance(data.get("analysis"), str)


def dataset_of(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(dataset name, data source) recorded in a run's config."""
    return rundir.config_dataset(config), rundir.config_source(config)
