"""What reslab keeps on disk, in one room below every other: run directories, JSON files, results.

Everything that reads or writes a run directory (the trainer, the analyses, the report, the
experiments) goes through here, so each file has one reader with one rule for damage:

* :mod:`reslab.store.jsonfiles` — JSON and JSON-lines files, the sanitiser for NaN/∞, NumPy
  scalars and paths, versions and timestamps, natural sort;
* :mod:`reslab.store.rundir` — the run directory's layout, ``config.json`` and
  ``metrics.jsonl``/``.csv``, what a run's config says (model, data, seed, kind);
* :mod:`reslab.store.results` — the :class:`Result` contract every analysis follows
  (``NAME.json`` + ``NAME.npz``);
* :mod:`reslab.store.lock` — one writer per run directory at a time;
* :mod:`reslab.store.outputs` — the check of an output file a command is told to write, before it works.

This room imports nothing of reslab but :mod:`reslab.errors` and :mod:`reslab.utils`.
"""

from reslab.store.jsonfiles import (
    dumps_readable,
    json_ready,
    natural_key,
    read_json,
    read_jsonl,
    utc_now,
    versions,
    write_json,
)
from reslab.store.lock import RunDirLock, lock_holder
from reslab.store.outputs import check_output_file
from reslab.store.results import Result, from_dict, read_result, to_plain
from reslab.store.rundir import (
    ANALYSIS_DIRNAME,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    KIND_PLAIN,
    KIND_RESIDUAL,
    METRIC_COLUMNS,
    METRICS_CSV,
    METRICS_JSONL,
    config_dataset,
    config_kind,
    config_model,
    config_source,
    config_task,
    config_value,
    config_variant,
    experiment_runs,
    is_experiment_dir,
    is_run_dir,
    read_config,
    read_metrics,
    same_training,
    write_config,
    write_metrics,
)

__all__ = [
    "ANALYSIS_DIRNAME", "CHECKPOINT_DIR", "CONFIG_FILE", "KIND_PLAIN", "KIND_RESIDUAL", "METRIC_COLUMNS",
    "METRICS_CSV", "METRICS_JSONL", "Result", "RunDirLock", "check_output_file", "config_dataset", "config_kind",
    "config_model", "config_source", "config_task", "config_value", "config_variant", "dumps_readable", "experiment_runs", "from_dict",
    "is_experiment_dir", "is_run_dir", "json_ready", "lock_holder", "natural_key", "read_config", "read_json", "read_jsonl",
    "read_metrics", "read_result", "same_training", "to_plain", "utc_now", "versions", "write_config",
    "write_json", "write_metrics",
]
