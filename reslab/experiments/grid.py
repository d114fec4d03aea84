"""``reslab sweep``: any grid of training runs — settings × seeds — through any launcher.

A sweep is the settings every run shares (a recipe, a model, data, ``--set KEY=VALUE``), the
axes that vary (``--grid lr=0.05,0.1,0.2 --grid model=resnet20,plain20``) and the seeds. Every
point of the grid times every seed is one run, named by what varies and its id
(:func:`~reslab.experiments.runs.run_id`, a hash of its settings, the seed included)::

    EXP_DIR/lr0.05-s0-3fa2c1d9/   EXP_DIR/lr0.1-s0-b2e41c07/   ...
    EXP_DIR/runs.json       the index: every run, where it went, what came back
    EXP_DIR/settings.json   the sweep's settings and the command that remakes it
    EXP_DIR/sweep.json      per run: its settings, final and best errors and losses, wall time

The same command again reuses finished runs and resumes the others; ``reslab sweep resume
EXP_DIR`` does that with the launcher the sweep was started with, or another one.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    check_runs,
    ensure_runs,
    experiment_command,
    stderr_printer,
    write_settings_file,
)
from reslab.experiments.launch.base import LaunchSettings
from reslab.experiments.runs import default_threads, run_id
from reslab.settings import key_value_arguments, parse_value, setting
from reslab.store import rundir
from reslab.store.jsonfiles import finite_number, utc_now, versions, write_json
from reslab.train import TrainConfig, resolve_config
from reslab.train.config import FIELD_NAMES, coerce

SUMMARY_FILE = "sweep.json"
FORMAT = 1
#: Settings a sweep sets for each run itself.
FIXED_KEYS = ("out", "seed")


@dataclass(frozen=True)
class GridSweepSettings(LaunchSettings):
    """Every option of :func:`run_grid_sweep` and ``reslab sweep run``."""

    out: str | None = setting(None, "the sweep's directory (required; on shared storage for slurm and ray)",
                              metavar="DIR")
    model: str | None = setting(None, "the model of every run (or vary it with --grid model=A,B)", metavar="MODEL")
    data: str | None = setting(None, "the dataset of every run (default: the recipe's)", metavar="DATA")
    data_dir: str | None = setting(None, "where the dataset's files are", metavar="DIR")
    recipe: str | None = setting(None, "training recipe name or .toml path (default: the task's)",
                                 metavar="NAME|FILE")
    epochs: int | None = setting(None, "epochs per run (replaces the recipe's)", minimum=1)
    seeds: tuple[int, ...] = setting((0,), "the seeds; every grid point is trained with each", metavar="S")
    grid: dict[str, Any] = setting(default_factory=dict, help="the axes: setting → list of values", cli=False)
    overrides: dict[str, Any] = setting(default_factory=dict, help="training settings every run shares", cli=False)
    jobs: int = setting(1, "local: runs trained at the same time, each in its own process with cores/jobs threads",
                        minimum=1)
    quiet: bool = setting(False, "print only the summary table")

    def check(self) -> None:
        super().check()
        for key, values in self.grid.items():
            if key not in FIELD_NAMES:
                raise ConfigError(f"--grid {key}=…: {key!r} is not a training setting; settings are: "
                                  f"{', '.join(FIELD_NAMES)}")
            if key in FIXED_KEYS:
                raise ConfigError(f"--grid {key}=…: the sweep sets each run's {key} itself; use --seeds and --out")
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"--grid {key}: give at least one value, e.g. --grid {key}=0.05,0.1")
        fixed = [key for key in FIXED_KEYS if key in self.overrides]
        if fixed:
            raise ConfigError(f"--set {fixed[0]}: the sweep sets each run's {fixed[0]} itself; use --seeds and --out")
        clash = sorted(set(self.grid) & set(self.overrides))
        if clash:
            raise ConfigError(f"{clash[0]} is both in --grid and --set; give it once")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds {' '.join(map(str, self.seeds))}: a seed is given twice")

    def command(self) -> str:
        base = self.replace(grid={}, out=str(Path(self.out).resolve()))
        text = experiment_command(["reslab", "sweep", "run"], base)
        return text + " " + " ".join(_quote(a) for a in key_value_arguments(
            {k: ",".join(map(str, v)) for k, v in self.grid.items()}, "--grid"))


def _quote(text: str) -> str:
    import shlex  # noqa: PLC0415 - only for the command line
    return shlex.quote(text)


def parse_grid(pairs: Sequence[str]) -> dict[str, list[Any]]:
    """``["lr=0.05,0.1", "model=resnet20,plain20"]`` → ``{"lr": [0.05, 0.1], "model": ["resnet20", "plain20"]}``."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid {pair!r}: expected KEY=V1,V2,…, e.g. --grid lr=0.05,0.1,0.2")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list every value once, e.g. --grid {key}=0.05,0.1")
        grid[key] = [parse_value(item.strip()) for item in text.split(",") if item.strip()]
        if key in FIELD_NAMES:  # a value of the wrong type is named here, with the flag it came from
            for value in grid[key]:
                coerce(key, value, f"--grid {key}")
    return grid


@dataclass
class GridRun:
    name: str
    point: dict[str, Any]
    seed: int
    config: TrainConfig
    run_id: str


def _slug(point: Mapping[str, Any]) -> str:
    parts = [f"{key}{value}" for key, value in point.items()]
    text = "-".join(parts) if parts else "run"
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text)[:60]


def plan_grid(settings: GridSweepSettings) -> list[GridRun]:
    """Every grid point × seed as a run with its settings, id and directory (nothing written)."""
    experiment_dir = Path(settings.out)
    keys = list(settings.grid)
    threads = default_threads(settings.launcher, settings.jobs, {**settings.overrides, **settings.grid})
    runs = []
    for values in itertools.product(*(settings.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        for seed in settings.seeds:
            changes = {**settings.overrides, **point, "seed": seed, "quiet": settings.quiet or settings.jobs > 1}
            if settings.epochs is not None:
                changes["epochs"] = settings.epochs
            if settings.data_dir is not None:
                changes["data_dir"] = settings.data_dir
            if threads is not None:
                changes["threads"] = threads
            model = changes.pop("model", settings.model)
            data = changes.pop("data", settings.data)
            config = resolve_config(settings.recipe, model=model, data=data, overrides=changes)
            identity = run_id(config)
            name = f"{_slug(point)}-s{seed}-{identity[:8]}"
            runs.append(GridRun(name, point, seed, config.replace(out=str(experiment_dir / name)), identity))
    return runs


def _summary_row(run: GridRun) -> dict[str, Any]:
    metrics = rundir.read_metrics(Path(run.config.out))
    last = metrics[-1] if metrics else {}
    tests = [m.get("test_error") for m in metrics if isinstance(m.get("test_error"), (int, float))]
    return {"run": run.name, "id": run.run_id, **{f"{k}": v for k, v in run.point.items()}, "seed": run.seed,
            "model": run.config.model, "epochs": last.get("epoch"),
            "final_train_loss": finite_number(last.get("train_loss")),
            "final_train_error": finite_number(last.get("train_error")),
            "final_test_loss": finite_number(last.get("test_loss")),
            "final_test_error": finite_number(last.get("test_error")),
            "best_test_error": min(tests) if tests else None, "train_time_s": finite_number(last.get("elapsed_s"))}


@dataclass
class GridSweepResult(ExperimentResult):
    def table(self) -> str:
        rows = (self.summary or {}).get("runs") or []
        if not rows:
            return "no runs"
        axes = (self.summary or {}).get("axes") or []
        header = ["run", *axes, "seed", "train err", "test err", "test loss", "time"]
        body = []
        for r in rows:
            body.append([r["run"], *(str(r.get(a)) for a in axes), str(r["seed"]), _pct(r.get("final_train_error")),
                         _pct(r.get("final_test_error")), _num(r.get("final_test_loss")),
                         f"{r['train_time_s']:.1f} s" if isinstance(r.get("train_time_s"), (int, float)) else "–"])
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
        return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip()
                         for line in [header, *body])


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def run_grid_sweep(settings: GridSweepSettings | Mapping[str, Any] | None = None, *, say: Message | None = None,
                   **changes: Any) -> GridSweepResult:
    """Train (or resume, or reuse) every run of the grid through the launcher; write ``sweep.json``."""
    s = GridSweepSettings.of(settings, **changes)
    if not s.out:
        raise ConfigError("reslab sweep run needs --out DIR: the sweep's directory (resume it later with "
                          "reslab sweep resume DIR)")
    experiment_dir = Path(s.out)
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the sweep")
    runs = plan_grid(s)
    command = s.command()
    check_runs([r.config for r in runs])
    say = say or stderr_printer("reslab sweep", enabled=not s.quiet)

    def on_start() -> None:
        say(f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {experiment_dir} through the {s.launcher} launcher")
        write_settings_file(experiment_dir, s, command)

    start = time.perf_counter()
    outcomes = ensure_runs([r.config for r in runs], jobs=s.jobs, launch=s.launch_settings(),
                           experiment_dir=experiment_dir, command=command, on_start=on_start, say=say,
                           epoch_lines=not s.quiet)
    if not (len(outcomes) == len(runs) and all(o.finished for o in outcomes)):
        say(f"stopped before every run finished; continue with: reslab sweep resume {experiment_dir}")
        return GridSweepResult(experiment_dir, outcomes, None, [], complete=False)
    summary = {"experiment": "sweep", "format": FORMAT, "created": utc_now(), "versions": versions(),
               "command": command, "settings": s.to_dict(), "axes": list(s.grid), "launcher": s.launcher,
               "wall_s": round(time.perf_counter() - start, 2), "runs": [_summary_row(r) for r in runs]}
    path = write_json(experiment_dir / SUMMARY_FILE, summary)
    return GridSweepResult(experiment_dir, outcomes, summary, [path])


__all__ = ["GridSweepSettings", "GridSweepResult", "GridRun", "parse_grid", "plan_grid", "run_grid_sweep",
           "SUMMARY_FILE"]
