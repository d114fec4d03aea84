"""Reading what runs, analyses and experiments wrote: the report's only inputs.

The report never imports training or analysis code; it reads their files:

* ``RUN_DIR/config.json`` and ``RUN_DIR/metrics.jsonl`` (the trainer),
* ``RUN_DIR/analysis/<name>.json`` (+ ``<name>.npz``) (the analyses; a directory that holds the
  result files directly, such as the ``--out`` of an analysis of a model name, works too),
* ``EXPERIMENT_DIR/<name>.json`` (experiments, e.g. ``degradation.json``).

Every reader returns ``None``/``[]`` for a missing file, so sections can skip quietly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ANALYSIS_DIRNAME = "analysis"


def read_json(path: str | Path) -> Any:
    """The parsed JSON file, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per line; missing file → ``[]``, broken lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash mid-write
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_config(run_dir: str | Path) -> dict[str, Any]:
    config = read_json(Path(run_dir) / "config.json")
    return config if isinstance(config, dict) else {}


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def find_result(directory: str | Path, name: str) -> Path | None:
    """``DIR/analysis/<name>.json`` or ``DIR/<name>.json``, whichever exists first, else ``None``."""
    directory = Path(directory)
    for candidate in (directory / ANALYSIS_DIRNAME / f"{name}.json", directory / f"{name}.json"):
        if candidate.is_file():
            return candidate
    return None


def load_result(path: str | Path) -> dict[str, Any] | None:
    """A result JSON with its arrays put back from the ``.npz`` beside it; ``None`` if unreadable.

    Array fields are stored in the JSON as ``{"__array__": KEY}`` (see ``docs/analysis.md``).
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    npz_path = path.with_suffix(".npz")
    arrays: dict[str, np.ndarray] = {}
    if npz_path.is_file():
        try:
            with np.load(npz_path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError):
            arrays = {}
    return _insert_arrays(data, arrays)


def _insert_arrays(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays.get(value["__array__"])  # None when the .npz is missing: plots skip it
        return {k: _insert_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_insert_arrays(v, arrays) for v in value]
    return value


def is_run_dir(path: str | Path) -> bool:
    """A directory the trainer wrote (``config.json`` or ``metrics.jsonl``) or analyses wrote into.

    An ``analysis/`` subfolder alone does not make a run (a parent of ``analysis/MODEL`` folders
    is not one).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "config.json").is_file() or (path / "metrics.jsonl").is_file():
        return True
    return any(_is_analysis_result(p) for p in path.glob("*.json"))


def _is_analysis_result(path: Path) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and isinstance(data.get("analysis"), str)


def is_experiment_dir(path: str | Path) -> bool:
    """A directory whose subdirectories include trainer run directories (``config.json``)."""
    path = Path(path)
    return path.is_dir() and any((child / "config.json").is_file() for child in path.iterdir() if child.is_dir())


def experiment_runs(experiment_dir: str | Path) -> list[Path]:
    """The run directories inside an experiment directory, sorted by name (depth-aware)."""
    from reslab.report.plots import natural_key

    runs = [child for child in Path(experiment_dir).iterdir() if child.is_dir() and is_run_dir(child)
            and child.name != ANALYSIS_DIRNAME]
    return sorted(runs, key=lambda p: natural_key(p.name))


def run_label(run_dir: str | Path) -> str:
    """How the report names a run: ``experiment/run`` when it sits in a directory of runs, else its name."""
    path = Path(run_dir)
    return path.name or str(path)


def config_value(config: dict[str, Any], *keys: str, default=None):
    """The first of ``keys`` found in ``config`` or in its nested dicts (breadth first)."""
    queue = [config]
    while queue:
        current = queue.pop(0)
        for key in keys:
            if key in current and current[key] is not None and not isinstance(current[key], dict):
                return current[key]
        queue.extend(v for v in current.values() if isinstance(v, dict))
    return default


def model_of(config: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(model name, model options) recorded in a run's config."""
    model = config.get("model")
    if isinstance(model, dict):
        return model.get("name"), dict(model.get("options") or model.get("model_options") or {})
    return (model if isinstance(model, str) else None), dict(config.get("model_options") or {})


def dataset_of(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """(dataset name, data source) recorded in a run's config."""
    name = None
    for key in ("data", "dataset"):
        value = config.get(key)
        if isinstance(value, dict):
            name = value.get("name")
            break
        if isinstance(value, str):
            name = value
            break
    source = config.get("data_source")
    if source is None:
        for key in ("dataset", "data", "dataset_info"):
            value = config.get(key)
            if isinstance(value, dict) and value.get("source"):
                source = value["source"]
                break
    return name, source


def kind_of(name: str | None, options: dict[str, Any]) -> str:
    """``"plain"`` or ``"residual"`` from a model name and options (plain names start without shortcuts)."""
    shortcut = options.get("shortcut")
    if shortcut is None:
        return "plain" if name and "plain" in name else "residual"
    return "plain" if shortcut == "none" else "residual"
