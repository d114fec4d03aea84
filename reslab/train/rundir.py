"""The run directory: ``config.json``, ``metrics.jsonl``/``.csv`` and ``checkpoints/``.

```
RUN_DIR/config.json                        resolved settings + dataset facts + versions
RUN_DIR/metrics.jsonl, metrics.csv          one record per epoch (METRIC_COLUMNS)
RUN_DIR/checkpoints/init.safetensors        weights at initialisation
RUN_DIR/checkpoints/epoch_{k:04d}.safetensors   every save_every epochs
RUN_DIR/checkpoints/last.safetensors        latest weights
RUN_DIR/checkpoints/last.state.pt           everything needed to resume (weights_only=True)
RUN_DIR/checkpoints/ema.safetensors         EMA weights (ema=true)
RUN_DIR/analysis/                           analyses of this run
```
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping

from reslab.errors import CheckpointError, ConfigError
from reslab.train.checkpoint import CHECKPOINT_DIR
from reslab.utils import atomic_write_text

CONFIG_FILE = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
STATE_FILE = "last.state.pt"

METRIC_COLUMNS = (
    "epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error",
    "ema_test_loss", "ema_test_error", "images_per_s", "epoch_time_s", "elapsed_s",
)


def default_run_dir(model: str, data: str) -> Path:
    return Path("runs") / f"{model}-{data}"


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def state_path(run_dir: Path) -> Path:
    return checkpoints_dir(run_dir) / STATE_FILE


def versions() -> dict[str, str]:
    import numpy
    import torch

    from reslab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "reslab": __version__}


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.json`` as a dict; CheckpointError if the directory is not a run."""
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
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is corrupt ({exc}); the run's settings cannot be read") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{str(path)!r} is not a reslab run config (no 'model' key)")
    return config


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=False) + "\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(run_dir: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` and ``metrics.csv`` with ``records`` (atomically, both).

    The files are small (one line per epoch), so rewriting them whole keeps them consistent
    with the checkpoint after a resume instead of appending duplicates.
    """
    records = list(records)
    lines = [json.dumps({k: _json_value(v) for k, v in r.items()}) for r in records]
    atomic_write_text(Path(run_dir) / METRICS_JSONL, "".join(line + "\n" for line in lines))
    buffer = io.StringIO()
    extra = sorted({k for r in records for k in r} - set(METRIC_COLUMNS))
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS) + extra, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    atomic_write_text(Path(run_dir) / METRICS_CSV, buffer.getvalue())


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (empty when the run has none yet)."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{str(path)!r} line {number} is corrupt ({exc})") from None
    return records


def check_fresh(run_dir: Path) -> None:
    """Refuse to start a new run in a directory that already holds one (finished or not)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {str(run_dir)!r} is a file; give a directory for the run")
    if not (run_dir / CONFIG_FILE).exists() and not checkpoints_dir(run_dir).exists():
        return
    if not state_path(run_dir).exists():
        raise ConfigError(f"{str(run_dir)!r} already holds a run that saved no resumable checkpoint (it stopped "
                          "during its first epoch); delete the directory or choose a fresh --out DIR")
    finished = False
    try:
        import torch

        state = torch.load(state_path(run_dir), map_location="cpu", weights_only=True)
        finished = bool(state.get("finished"))
        where = f"{state.get('epoch', '?')} epochs, iteration {state.get('iteration', '?')}"
    except Exception:  # noqa: BLE001 - an unreadable state: resuming will say what is wrong
        where = "its training state is unreadable"
    if finished:
        raise ConfigError(f"{str(run_dir)!r} already holds a finished run ({where}); choose a fresh --out DIR, "
                          f"or continue it with --resume {run_dir} --epochs N (more epochs)")
    raise ConfigError(f"{str(run_dir)!r} already holds an unfinished run ({where}); continue it with "
                      f"--resume {run_dir}, or choose a fresh --out DIR")
