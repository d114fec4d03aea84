"""The run directory: one trained model's settings, per-epoch metrics, checkpoints and analyses.

```
RUN_DIR/config.json                        resolved settings + dataset facts + versions
RUN_DIR/metrics.jsonl, metrics.csv          one record per epoch (METRIC_COLUMNS)
RUN_DIR/checkpoints/init.safetensors        weights at initialisation
RUN_DIR/checkpoints/epoch_{k:04d}.safetensors   every save_every epochs
RUN_DIR/checkpoints/last.safetensors        latest weights
RUN_DIR/checkpoints/last.state.pt           everything needed to resume (weights_only=True)
RUN_DIR/checkpoints/ema.safetensors         EMA weights (ema=true)
RUN_DIR/analysis/                           analyses of this run
RUN_DIR/.lock                               held by the one process writing the run (see lock.py)
```

A directory is a run directory when it holds ``config.json`` (:func:`is_run_dir`); nothing
else counts. The readers here are the only ones in reslab: a missing or damaged file is a
:class:`~reslab.errors.CheckpointError` that names it, and ``metrics.jsonl`` follows
:func:`reslab.store.jsonfiles.read_jsonl`'s rule (``partial_ok`` for a run still training).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from reslab.errors import CheckpointError
from reslab.store.jsonfiles import (
    json_ready,
    natural_key,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from reslab.store.lock import LOCK_FILE
from reslab.utils import atomic_write_text

CONFIG_FILE = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
#: A file that asks a training run to stop, with a checkpoint, at the end of its epoch (how a
#: search prunes a trial that trains on another machine).
STOP_REQUEST = "stop-request"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "last.state.pt"
INIT_WEIGHTS = "init.safetensors"
LAST_WEIGHTS = "last.safetensors"
EMA_WEIGHTS = "ema.safetensors"
#: Checkpoints a command may name by a short word (``--checkpoint last``).
NAMED_WEIGHTS = {"init": INIT_WEIGHTS, "last": LAST_WEIGHTS, "ema": EMA_WEIGHTS}

#: The layout of ``config.json``: ``format`` 2 records ``task`` and each derived fact once (runs
#: without ``format`` are read by the same readers; :func:`config_task` infers their task).
CONFIG_FORMAT = 2
ANALYSIS_DIRNAME = "analysis"

#: The kinds of run (``config["task"]``); :mod:`reslab.tasks` defines what each one does.
TASK_CLASSIFY = "classify"
TASK_SEGMENT = "segment"
TASK_LANGUAGE_MODEL = "language-model"

KIND_RESIDUAL = "residual"
KIND_PLAIN = "plain"

#: What joins a block's branch and its input (:func:`config_variant`): the residual sum, nothing
#: (a plain twin), a highway gate, a DenseNet's concatenation, ReZero's scaled sum.
VARIANT_RESIDUAL, VARIANT_PLAIN, VARIANT_HIGHWAY, VARIANT_DENSE, VARIANT_REZERO = (
    "residual", "plain", "highway", "dense", "rezero")
VARIANTS = (VARIANT_RESIDUAL, VARIANT_PLAIN, VARIANT_HIGHWAY, VARIANT_DENSE, VARIANT_REZERO)

#: Names that fix their variant, matched against the whole name (the registry's families; the store
#: may not import models). A name none of them matches is residual unless its options say otherwise.
_NAMED_VARIANTS = (
    (VARIANT_DENSE, re.compile(r"densenet\w*")),
    (VARIANT_HIGHWAY, re.compile(r"highway\d+")),
    (VARIANT_REZERO, re.compile(r"rezero_(transformer|lstm|gru)\d+")),
    (VARIANT_PLAIN, re.compile(r"(cifar_)?plain\d+|plain_(transformer|lstm|gru|mlp)\d+|unet_(cifar_)?plain\d+")),
)
#: The ``merge`` option of the transformer, RNN and MLP families, as a variant.
_MERGE_VARIANTS = {"sum": VARIANT_RESIDUAL, "none": VARIANT_PLAIN, "highway": VARIANT_HIGHWAY,
                   "rezero": VARIANT_REZERO}

METRIC_COLUMNS = (
    "epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error",
    "ema_test_loss", "ema_test_error", "images_per_s", "epoch_time_s", "elapsed_s",
)

#: What makes two runs "the same training" for reuse and twin-finding: the model with its
#: options, the data with its options, and the seed.
IDENTITY_KEYS = ("model", "model_options", "data", "data_options", "seed")


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory the trainer wrote (it holds ``config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def state_path(run_dir: str | Path) -> Path:
    return checkpoints_dir(run_dir) / STATE_FILE


def analysis_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ANALYSIS_DIRNAME


# -- config.json ------------------------------------------------------------------------------------
def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json`` as a dict; CheckpointError if the directory is not a readable run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory (it is a file)")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory: {CONFIG_FILE} is missing "
                              "(a run directory is what `reslab train --out DIR` writes)")
    try:
        config = read_json(path, error=CheckpointError, what="run config")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; the run's settings cannot be read") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{str(path)!r} is not a reslab run config (no 'model' key)")
    return config


def write_config(run_dir: str | Path, config: Mapping[str, Any]) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, dict(config), indent=2)


# -- metrics.jsonl / metrics.csv ----------------------------------------------------------------------
def read_metrics(run_dir: str | Path, *, partial_ok: bool = False) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (``[]`` when the run has none yet).

    ``partial_ok``: the run may be training right now (a report or an experiment watching it):
    a damaged last line is skipped with a warning; a damaged line elsewhere is always an error.
    """
    return read_jsonl(Path(run_dir) / METRICS_JSONL, partial_ok=partial_ok, error=CheckpointError)


def write_metrics(run_dir: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` and ``metrics.csv`` with ``records`` (atomically, both).

    The files are small (one line per epoch), so rewriting them whole keeps them consistent
    with the checkpoint after a resume instead of appending duplicates.
    """
    records = [json_ready(dict(r)) for r in records]
    write_jsonl(Path(run_dir) / METRICS_JSONL, records)
    buffer = io.StringIO()
    extra = sorted({k for r in records for k in r} - set(METRIC_COLUMNS))
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS) + extra, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    atomic_write_text(Path(run_dir) / METRICS_CSV, buffer.getvalue())


# -- what a run's config says ---------------------------------------------------------------------------
def config_value(config: Mapping[str, Any], *keys: str, default=None):
    """The first setting of ``keys`` a run's config records (settings are top-level keys in every
    layout), or ``default``."""
    for key in keys:
        value = config.get(key)
        if value is not None and not isinstance(value, Mapping):
            return value
    return default


def config_model(config: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(model name, model options) recorded in a run's config."""
    model = config.get("model")
    if isinstance(model, Mapping):
        return model.get("name"), dict(model.get("options") or model.get("model_options") or {})
    return (model if isinstance(model, str) else None), dict(config.get("model_options") or {})


def config_task(config: Mapping[str, Any]) -> str:
    """The task of a run: its config's ``"task"``; for runs written before that key existed, what
    their data says (``text`` is a language model, segmentation data or a U-Net a segmenter)."""
    task = config.get("task")
    if isinstance(task, str) and task:
        return task
    data = str(config_dataset(config) or "").lower()
    name, _ = config_model(config)
    if data == "text" or data.startswith("text:"):
        return TASK_LANGUAGE_MODEL
    if data == "shapes" or data.startswith("segfolder") or (name or "").startswith("unet_"):
        return TASK_SEGMENT
    return TASK_CLASSIFY


def config_window(config: Mapping[str, Any]) -> int | None:
    """The token window a language-model run was trained on (its text data's ``context``), or None."""
    dataset = config.get("dataset")
    recorded = (dataset.get("options") or {}).get("context") if isinstance(dataset, Mapping) else None
    window = recorded if recorded is not None else (config.get("data_options") or {}).get("context")
    return int(window) if isinstance(window, int) and not isinstance(window, bool) and window > 0 else None


def config_dataset(config: Mapping[str, Any]) -> str | None:
    """The dataset name recorded in a run's config."""
    for key in ("data", "dataset"):
        value = config.get(key)
        if isinstance(value, Mapping):
            return value.get("name")
        if isinstance(value, str):
            return value
    return None


def config_source(config: Mapping[str, Any]) -> str | None:
    """Where the run's data came from (a path, or ``"embedded (…)"``)."""
    source = config.get("data_source")
    if source is None:
        for key in ("dataset", "data", "dataset_info"):
            value = config.get(key)
            if isinstance(value, Mapping) and value.get("source"):
                return value["source"]
    return source


def model_variant(name: str | None, options: Mapping[str, Any]) -> str:
    """One of :data:`VARIANTS` for a model name and its options: an option that sets the merge
    (``merge``, ``shortcut="none"``, ``gated``) decides; else the name's family (:data:`_NAMED_VARIANTS`)."""
    merge = options.get("merge")
    if merge in _MERGE_VARIANTS:
        return _MERGE_VARIANTS[merge]
    shortcut = options.get("shortcut")
    if shortcut == "none":
        return VARIANT_PLAIN
    if options.get("gated") is True:
        return VARIANT_HIGHWAY
    if shortcut is not None or options.get("gated") is False:
        # A shortcut set by the options overrides what the name implies (plain20 with shortcut A, highway20
        # without its gate), but not a DenseNet's concatenation, which has no such option.
        named = _named_variant(name)
        return VARIANT_DENSE if named == VARIANT_DENSE else VARIANT_RESIDUAL
    return _named_variant(name) or VARIANT_RESIDUAL


def _named_variant(name: str | None) -> str | None:
    return next((variant for variant, pattern in _NAMED_VARIANTS if name and pattern.fullmatch(name)), None)


def config_variant(config: Mapping[str, Any]) -> str:
    """One of :data:`VARIANTS` for a run: the ``variant`` its config records (format 2); for older
    runs, from the model name and the options it was built with (the full ``model_settings`` they
    recorded, over the ``model_options`` that were asked for)."""
    if config.get("variant") in VARIANTS:
        return config["variant"]
    name, options = config_model(config)
    settings = config.get("model_settings")
    if isinstance(settings, Mapping):
        options = {**options, **settings}
    return model_variant(name, options)


def config_kind(name: str | None, options: Mapping[str, Any]) -> str:
    """``"plain"`` or ``"residual"`` for a model name + options as a run config records them: what
    twin-pairing needs (every variant with a path around its branches counts as residual)."""
    return KIND_PLAIN if model_variant(name, options) == VARIANT_PLAIN else KIND_RESIDUAL


def training_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's config that says which training it is (:data:`IDENTITY_KEYS`)."""
    name, options = config_model(config)
    return {"model": name, "model_options": options, "data": str(config_dataset(config) or "").lower(),
            "data_options": dict(config.get("data_options") or {}), "seed": config_value(config, "seed")}


def same_training(a: Mapping[str, Any], b: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> bool:
    """Whether two run configs (or dicts with the same keys) record the same model, options, data and seed.

    ``ignore``: identity keys not to compare (``("model", "model_options")`` for a twin).
    """
    left, right = training_identity(a), training_identity(b)
    return all(left[k] == right[k] for k in IDENTITY_KEYS if k not in set(ignore))


# -- directories of runs ------------------------------------------------------------------------------
def is_experiment_dir(path: str | Path) -> bool:
    """A directory whose subdirectories include run directories."""
    path = Path(path)
    return path.is_dir() and any(is_run_dir(child) for child in path.iterdir())


def experiment_runs(experiment_dir: str | Path) -> list[Path]:
    """The run directories inside ``experiment_dir``, in natural order (``resnet20 < resnet110``)."""
    runs = [child for child in Path(experiment_dir).iterdir() if is_run_dir(child)]
    return sorted(runs, key=lambda p: natural_key(p.name))


__all__ = [
    "ANALYSIS_DIRNAME", "CHECKPOINT_DIR", "CONFIG_FILE", "CONFIG_FORMAT", "EMA_WEIGHTS", "IDENTITY_KEYS",
    "INIT_WEIGHTS", "KIND_PLAIN", "KIND_RESIDUAL", "LAST_WEIGHTS", "LOCK_FILE", "METRIC_COLUMNS", "METRICS_CSV",
    "METRICS_JSONL", "NAMED_WEIGHTS", "STATE_FILE", "TASK_CLASSIFY", "TASK_LANGUAGE_MODEL", "TASK_SEGMENT", "VARIANTS",
    "analysis_dir", "checkpoints_dir", "config_dataset", "config_kind", "config_model", "config_source", "config_task",
    "config_value", "config_variant", "config_window", "experiment_runs", "model_variant",
    "is_experiment_dir", "is_run_dir", "read_config", "read_metrics", "same_training", "state_path",
    "training_identity", "write_config", "write_metrics",
]
