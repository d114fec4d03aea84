"""The lr-depth experiment: the best peak learning rate per depth, for residual nets and their plain twins.

For every depth ``d`` (6n+2) and twin (``resnet{d}`` / ``plain{d}``), one search
(:mod:`reslab.experiments.search`: an Optuna study) over the peak learning rate, loguniform in
``[lr_min, lr_max]``, every other setting from the recipe (``digits-degradation`` on the digits).
All studies share one launcher, so their trials fill its slots together::

    EXP_DIR/resnet20/   EXP_DIR/plain20/   …    one search each (study.db, trials/, search.json)
    EXP_DIR/lr_depth.json    per depth × twin: best lr, best value, every trial's lr and final loss
    EXP_DIR/lr_depth.png     best lr against depth per twin; final loss against lr, one panel per twin
    EXP_DIR/settings.json    the settings and the command that (re)makes it

Resumable like every search: the same command continues the studies.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    cpu_count,
    experiment_command,
    stderr_printer,
    write_settings_file,
)
from reslab.experiments.degradation import KIND_PLAIN, KIND_RESIDUAL, default_recipe, twin_models, validate_depths
from reslab.experiments.index import ExperimentLock, RunIndex, announce_start
from reslab.experiments.launch.base import LaunchSettings, make_launcher
from reslab.experiments.runs import default_threads
from reslab.experiments.search import Search, SearchSettings, _optuna, drive
from reslab.settings import setting
from reslab.store.jsonfiles import write_json

SUMMARY_FILE = "lr_depth.json"
PLOT_FILE = "lr_depth.png"
FORMAT = 1
DEFAULT_DEPTHS = (20, 56, 110)
DEFAULT_TRIALS = 8
#: Epochs per trial by default: the recipe's 15 put 6 studies × 8 trials well past 15 minutes on two
#: (shared) cores; 10 took 7 minutes for the first 10 of 48 trials.
DEFAULT_EPOCHS = 8
#: --quick: two shallow depths, 4 epochs, 4 trials per study (about a minute on two cores).
QUICK = {"depths": (8, 20), "epochs": 4, "trials": 4}
FIXED_KEYS = ("model", "data", "out", "lr")


@dataclass(frozen=True)
class LrDepthSettings(LaunchSettings):
    """Every option of :func:`run_lr_depth` and ``reslab experiment lr-depth``."""

    depths: tuple[int, ...] | None = setting(None, "weight layers, each 6n+2 (default 20 56 110; --quick: 8 20)",
                                             metavar="D")
    data: str = setting("digits", "dataset: digits (embedded), cifar10, cifar100, synthetic")
    data_dir: str | None = setting(None, "where the dataset's files are", metavar="DIR")
    recipe: str | None = setting(None, "training recipe (default: digits-degradation for the digits, cifar10-fast "
                                       "otherwise)", metavar="NAME|FILE")
    trials: int | None = setting(None, f"trials per study (default {DEFAULT_TRIALS}; --quick: {QUICK['trials']})",
                                 minimum=1, metavar="N")
    epochs: int | None = setting(None, f"epochs per trial (default {DEFAULT_EPOCHS}; --quick: {QUICK['epochs']})",
                                 minimum=1)
    lr_min: float = setting(1e-3, "lowest peak lr searched", minimum=1e-12, metavar="LR")
    lr_max: float = setting(1.0, "highest peak lr searched", minimum=1e-12, metavar="LR")
    sampler: Literal["tpe", "random"] = setting("tpe", "how each study picks learning rates")
    pruner: Literal["median", "none"] = setting("median", "stop trials worse than the median at the same epoch")
    metric: str = setting("test_loss", "the loss each study minimises (its final value)", metavar="NAME")
    start_points: int = setting(4, "learning rates every study tries first, log-spaced over the range (the same "
                                   "for every network, so the twins compare at equal lrs); the sampler picks the "
                                   "rest", minimum=0, metavar="K")
    seed: int = setting(0, "seed of the samplers", minimum=0)
    quick: bool = setting(False, "a smoke test: depths 8 20, 4 epochs, 4 trials per study")
    overrides: dict[str, Any] = setting(default_factory=dict, help="training settings, the same for every trial",
                                        cli=False)
    jobs: int | None = setting(None, "local: trials trained at the same time (default: one per core)", minimum=1)
    out: str | None = setting(None, "experiment directory (default runs/lr-depth-DATA)", metavar="DIR")
    quiet: bool = setting(False, "print only the summary table")

    def check(self) -> None:
        super().check()
        if self.depths is not None:
            validate_depths(self.depths)
        if self.lr_min >= self.lr_max:
            raise ConfigError(f"--lr-min {self.lr_min} must be below --lr-max {self.lr_max}, e.g. --lr-min 0.001 "
                              "--lr-max 1")
        fixed = [key for key in FIXED_KEYS if key in self.overrides]
        if fixed:
            raise ConfigError(f"--set {', '.join(fixed)}: the lr-depth experiment sets these itself (use --depths, "
                              "--data, --out, --lr-min/--lr-max)")

    def resolved(self) -> dict[str, Any]:
        """Depths, epochs, trials after --quick and the defaults."""
        quick = QUICK if self.quick else {}
        return {"depths": validate_depths(self.depths if self.depths is not None
                                          else quick.get("depths", DEFAULT_DEPTHS)),
                "epochs": self.epochs if self.epochs is not None else quick.get("epochs", DEFAULT_EPOCHS),
                "trials": self.trials if self.trials is not None else quick.get("trials", DEFAULT_TRIALS),
                # The local launcher's runs at a time; an engine's are --max-parallel.
                "jobs": self.jobs if self.jobs is not None else cpu_count() if self.launcher == "local" else 1}


class LrDepthResult(ExperimentResult):
    """What :func:`run_lr_depth` measured; ``summary`` is ``lr_depth.json``."""

    def table(self) -> str:
        return format_table((self.summary or {}).get("records") or [], (self.summary or {}).get("metric", "loss"))


def format_table(records: Sequence[Mapping[str, Any]], metric: str = "test_loss") -> str:
    header = f"{'model':<14} {'kind':<8} {'depth':>5} {'best lr':>9} {'best ' + metric:>15} {'trials':>6} {'pruned':>6}"
    lines = [header, "-" * len(header)]
    for r in records:
        best_lr, best = r.get("best_lr"), r.get("best_value")
        trials = r.get("trials") or []
        lines.append(f"{r['model']:<14} {r['kind']:<8} {r['depth']:>5} "
                     f"{(f'{best_lr:.3g}' if best_lr is not None else '–'):>9} "
                     f"{(f'{best:.4f}' if best is not None else '–'):>15} "
                     f"{sum(1 for t in trials if t['state'] in ('COMPLETE', 'PRUNED')):>6} "
                     f"{sum(1 for t in trials if t['state'] == 'PRUNED'):>6}")
    return "\n".join(lines)


def record_of(search: Search, kind: str, depth: int, experiment_dir: Path) -> dict[str, Any]:
    """One entry of ``lr_depth.json``: the study's best lr and every trial's lr and final loss."""
    summary = search.summary()
    best = summary.get("best") or {}
    trials = [{"number": t["number"], "lr": t["params"].get("lr"), "state": t["state"], "final_loss": t["value"],
               "epochs": t["epochs"], **({"diverged": True} if t.get("diverged") else {})}
              for t in summary["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    return {"kind": kind, "depth": depth, "model": search.settings.model,
            "dir": str(search.experiment_dir.relative_to(experiment_dir)), "study": summary["study"],
            "best_lr": (best.get("params") or {}).get("lr"), "best_value": best.get("value"),
            "best_trial": best.get("number"), "trials": sorted(trials, key=lambda t: t["lr"] or 0)}


def run_lr_depth(settings: LrDepthSettings | Mapping[str, Any] | None = None, *, say: Message | None = None,
                 **changes: Any) -> LrDepthResult:
    """One lr search per depth × twin (residual, plain), trials through the launcher; writes lr_depth.json/.png.

    ``settings``: a :class:`LrDepthSettings` (or mapping), ``changes`` its fields: ``depths``, ``trials``,
    ``epochs``, ``lr_min``/``lr_max``, ``quick``, ``jobs``, ``out``, launcher settings, …
    """
    _optuna()
    settings = LrDepthSettings.of(settings, **changes)
    plan = settings.resolved()
    data = settings.data
    recipe = settings.recipe if settings.recipe is not None else default_recipe(data)
    experiment_dir = Path(settings.out) if settings.out else Path("runs") / f"lr-depth-{data}"
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the experiment")
    say = say or stderr_printer("reslab experiment lr-depth", enabled=not settings.quiet)
    jobs = plan["jobs"]
    launch = settings.launch_settings()
    threads = default_threads(launch.launcher, jobs, settings.overrides)
    # The resolved depths, epochs and trials: the command remakes these studies even if the defaults change.
    resolved = settings.replace(out=str(experiment_dir), depths=tuple(plan["depths"]), epochs=plan["epochs"],
                                trials=plan["trials"], quick=False)
    command = experiment_command(["reslab", "experiment", "lr-depth"], resolved,
                                 always=("data", "depths", "epochs", "trials"))
    searches: list[tuple[str, int, Search]] = []
    for depth in plan["depths"]:
        for kind, model in zip((KIND_RESIDUAL, KIND_PLAIN), twin_models(depth)):
            sub = SearchSettings(
                model=model, data=data, data_dir=settings.data_dir, recipe=recipe,
                space={"lr": f"loguniform:{settings.lr_min:g}:{settings.lr_max:g}"}, trials=plan["trials"],
                sampler=settings.sampler, pruner=settings.pruner, metric=settings.metric, seed=settings.seed,
                startup_trials=settings.start_points or SearchSettings.default("startup_trials"),
                epochs=plan["epochs"], overrides=dict(settings.overrides), jobs=jobs, out=str(experiment_dir / model),
                **{name: getattr(launch, name) for name in LaunchSettings.field_names()})
            search = Search.prepare(sub, experiment_dir / model, threads=threads, label=model)
            search.command = command
            searches.append((kind, depth, search))
    launcher = make_launcher(launch, experiment_dir, jobs=jobs)
    with launcher, contextlib.ExitStack() as stack:
        stack.enter_context(ExperimentLock(experiment_dir))
        for _, _, search in searches:
            stack.enter_context(ExperimentLock(search.experiment_dir))
        indexes = [RunIndex.load(search.experiment_dir) for _, _, search in searches]
        announce_start()
        say(f"{len(searches)} studies of {plan['trials']} trials ({', '.join(s.label for _, _, s in searches)}) in "
            f"{experiment_dir}, {jobs} trials at a time")
        write_settings_file(experiment_dir, settings, command)
        starts = start_lrs(settings.lr_min, settings.lr_max, min(settings.start_points, plan["trials"]))
        for (_, _, search), index in zip(searches, indexes):
            search.open(say)
            if not search.study.trials:  # a new study: the shared start points first
                for lr in starts:
                    search.study.enqueue_trial({"lr": lr})
            search.index = index
            search.index.set_launcher(launch.to_dict(), command)
            search.index.save()
        complete = drive([s for _, _, s in searches], launcher, say)
    if not complete:
        say(f"stopped before every study had its trials; rerun the same command to continue: {command}")
        return LrDepthResult(experiment_dir, [], None, [], complete=False)
    first = searches[0][2].config_for({"lr": settings.lr_min})
    summary = {
        "experiment": "lr-depth", "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": data, "recipe": recipe, "epochs": first.epochs, "depths": plan["depths"],
        "trials": plan["trials"], "lr_range": [settings.lr_min, settings.lr_max], "metric": settings.metric,
        "sampler": settings.sampler, "pruner": settings.pruner, "jobs": jobs, "command": command,
        "records": [record_of(search, kind, depth, experiment_dir) for kind, depth, search in searches],
    }
    files = write_summary(experiment_dir, summary)
    return LrDepthResult(experiment_dir, [], summary, files)


def write_summary(experiment_dir: Path, summary: Mapping[str, Any]) -> list[Path]:
    from reslab.report.files import read_json  # noqa: PLC0415 - lazy: matplotlib only when drawing
    from reslab.report.lr_depth_plots import plot_lr_depth  # noqa: PLC0415
    from reslab.report.plots import save_figure  # noqa: PLC0415

    json_path = write_json(experiment_dir / SUMMARY_FILE, summary, indent=1)
    png = save_figure(plot_lr_depth(read_json(json_path)), experiment_dir / PLOT_FILE)
    return [json_path, png]


def start_lrs(low: float, high: float, count: int) -> list[float]:
    """``count`` learning rates log-spaced over ``[low, high]``: the middles of equal bins on a log scale
    (1e-3..1 with 4: 0.0024, 0.013, 0.075, 0.42), so neither end of the range, rarely the best, is spent."""
    if count <= 0:
        return []
    a, b = math.log10(low), math.log10(high)
    return [float(f"{10 ** (a + (b - a) * (i + 0.5) / count):.4g}") for i in range(count)]


__all__ = ["LrDepthSettings", "LrDepthResult", "run_lr_depth", "format_table", "start_lrs", "SUMMARY_FILE",
           "PLOT_FILE", "QUICK", "DEFAULT_DEPTHS", "DEFAULT_TRIALS"]
