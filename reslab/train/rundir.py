"""What the trainer adds to the run directory of :mod:`reslab.store.rundir`: a default place, and
the refusal to start a new run where one already is.

The layout, readers and writers live in :mod:`reslab.store.rundir` (one home for every room);
the ones the trainer's users call are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from reslab.errors import ConfigError
from reslab.store.jsonfiles import versions
from reslab.store.rundir import (
    CONFIG_FILE,
    METRIC_COLUMNS,
    METRICS_CSV,
    METRICS_JSONL,
    STATE_FILE,
    checkpoints_dir,
    read_config,
    read_metrics,
    state_path,
    write_config,
    write_metrics,
)


def default_run_dir(model: str, data: str) -> Path:
    """``runs/MODEL-DATA`` (data with a folder, ``segfolder:path/to/dir``, gives ``segfolder-dir``)."""
    kind, _, rest = str(data).partition(":")
    name = f"{kind}-{Path(rest).name}" if rest else kind
    return Path("runs") / f"{model}-{name}"


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


__all__ = [
    "CONFIG_FILE", "METRIC_COLUMNS", "METRICS_CSV", "METRICS_JSONL", "STATE_FILE", "check_fresh", "checkpoints_dir",
    "default_run_dir", "read_config", "read_metrics", "state_path", "versions", "write_config", "write_metrics",
]
