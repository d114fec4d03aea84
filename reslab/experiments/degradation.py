"""The degradation experiment (He et al. 2015, §4.2 and Fig. 6): plain vs residual nets of growing depth.

For every depth ``d`` (6n+2 weight layers) and seed, the residual network (``resnet{d}``, or
``cifar_resnet{d}`` for depths without a registered name) and its plain twin (``plain{d}`` /
``cifar_plain{d}``: the same network without shortcuts) are trained with the *same* recipe,
settings and seed by :func:`reslab.train.train`, one run directory each::

    EXP_DIR/resnet20-s0/   EXP_DIR/plain20-s0/   EXP_DIR/resnet56-s0/ ...
    EXP_DIR/degradation.json        summary: settings + per run final errors and curves (docs/analysis.md)
    EXP_DIR/degradation.csv         one row per run (final / best errors, epochs, time)
    EXP_DIR/degradation_curves.csv  one row per run and epoch (train/test error and loss)
    EXP_DIR/degradation_curves.png  Fig. 6: error vs iterations, plain left, residual right
    EXP_DIR/degradation_depth.png   final train / test error vs depth

The experiment is resumable: running it again skips finished runs, resumes interrupted ones
from their checkpoints and only then rewrites the summary (see :mod:`reslab.experiments.common`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    check_runs,
    cpu_count,
    ensure_runs,
    experiment_command,
    stderr_printer,
    unique_in_order,
    write_settings_file,
)
from reslab.experiments.launch.base import LaunchSettings
from reslab.models import list_models, model_info
from reslab.settings import Settings, setting
from reslab.store.jsonfiles import finite_number, write_json
from reslab.train import resolve_config, rundir
from reslab.utils import atomic_write_text

DEFAULT_DEPTHS = (20, 56, 110)
SUMMARY_FILE = "degradation.json"
SUMMARY_CSV = "degradation.csv"
CURVES_CSV = "degradation_curves.csv"
CURVES_PNG = "degradation_curves.png"
DEPTH_PNG = "degradation_depth.png"
FORMAT = 1
KIND_RESIDUAL = "residual"
KIND_PLAIN = "plain"
#: Settings the experiment chooses itself; ``--set`` may not change them.
FIXED_KEYS = ("model", "seed", "out", "data")
CURVE_KEYS = ("epoch", "iteration", "train_error", "test_error", "train_loss", "test_loss")
CSV_COLUMNS = ("run", "model", "kind", "depth", "seed", "final_train_error", "final_test_error", "best_test_error",
               "epochs", "iterations", "train_time_s")


# -- what to train --------------------------------------------------------------------------------
def validate_depths(depths: Sequence[Any] | None) -> list[int]:
    """The depths as sorted unique ints; ConfigError unless each is 6n+2 with n ≥ 1 (8, 14, 20, …)."""
    if depths is None:
        return list(DEFAULT_DEPTHS)
    values = list(depths) if not isinstance(depths, (str, bytes)) else [depths]
    if not values:
        raise ConfigError("--depths: give at least one depth, e.g. --depths 20 56 110")
    out = []
    for value in values:
        try:
            depth = int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"--depths: {value!r} is not a whole number; give depths such as 20 56 110") from None
        if depth < 8 or (depth - 2) % 6:
            n = (depth - 2) // 6
            above = max(8, 6 * (n + 1) + 2)
            nearest = f"the nearest are {6 * n + 2} and {above}" if n >= 1 else f"the smallest is {above}"
            raise ConfigError(
                f"--depths: {depth} is not a valid depth; a CIFAR ResNet and its plain twin have 6n+2 weight layers "
                f"(n ≥ 1 basic blocks per stage: 8, 14, 20, 26, 32, 44, 56, 110, …); {nearest}")
        out.append(depth)
    return sorted(unique_in_order(out))


def twin_models(depth: int) -> tuple[str, str]:
    """(residual, plain) model names of a CIFAR network with ``depth`` weight layers.

    The registered CIFAR names (``resnet56``/``plain56``) where they exist; the generic
    ``cifar_resnet{d}``/``cifar_plain{d}`` otherwise (``resnet50`` is the ImageNet network).
    """

    def cifar_name(prefix: str) -> str:
        name = f"{prefix}{depth}"
        if name in list_models(name) and model_info(name).family == "cifar":
            return name
        return f"cifar_{prefix}{depth}"

    return cifar_name("resnet"), cifar_name("plain")


def resolve_seeds(seeds: int | Sequence[int] | None = None, seed: int | None = None) -> list[int]:
    """``seeds=K`` → ``[0, …, K-1]``; ``seeds=[…]`` → those; ``seed=S`` → ``[S]``; neither → ``[0]``."""
    if seeds is not None and seed is not None:
        raise ConfigError("give --seeds K (seeds 0..K-1) or --seed S (one seed), not both")
    if seed is not None:
        if int(seed) < 0:
            raise ConfigError(f"--seed must be >= 0, got {seed}")
        return [int(seed)]
    if seeds is None:
        return [0]
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1 (the number of seeds), got {seeds}")
        return list(range(seeds))
    values = unique_in_order(int(s) for s in seeds)
    if not values or min(values) < 0:
        raise ConfigError(f"seeds must be integers >= 0, got {list(seeds)}")
    return values


def default_recipe(data: str) -> str | None:
    """``digits-degradation`` for the digits; the trainer's default (``cifar10-fast``) otherwise."""
    return "digits-degradation" if data.lower() == "digits" else None


def run_name(model: str, seed: int) -> str:
    return f"{model}-s{seed}"


@dataclass
class PlannedRun:
    """One run of the experiment: its config and where it sits in the grid."""

    config: Any  # TrainConfig
    kind: str
    depth: int
    seed: int

    @property
    def name(self) -> str:
        return Path(self.config.out).name


def plan_runs(depths: Sequence[int], data: str, experiment_dir: Path, *, recipe: str | Path | None, seeds: list[int],
              epochs: int | None = None, overrides: Mapping[str, Any] | None = None, data_dir: str | Path | None = None,
              download: bool = False, quiet: bool = False, threads: int | None = None) -> list[PlannedRun]:
    """Resolve the TrainConfig of every (depth, kind, seed): the same recipe and overrides for all."""

    overrides = dict(overrides or {})
    fixed = [key for key in FIXED_KEYS if key in overrides]
    if fixed:
        raise ConfigError(f"--set {', '.join(fixed)}: the degradation experiment sets the model, seed, data and run "
                          "directory of each run itself; use --depths, --seeds/--seed, --data and --out")
    if epochs is not None:
        overrides["epochs"] = epochs
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if download:
        overrides["download"] = True
    if quiet:
        overrides["quiet"] = True
    if threads is not None:
        overrides["threads"] = threads
    planned = []
    for depth in depths:
        for kind, model in zip((KIND_RESIDUAL, KIND_PLAIN), twin_models(depth)):
            for seed in seeds:
                values = {**overrides, "seed": seed, "out": str(experiment_dir / run_name(model, seed))}
                config = resolve_config(recipe, model=model, data=data, overrides=values)
                planned.append(PlannedRun(config, kind, depth, seed))
    return planned


# -- the result -----------------------------------------------------------------------------------
class DegradationResult(ExperimentResult):
    """What :func:`run_degradation` did and measured; ``summary`` is ``degradation.json``."""

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list((self.summary or {}).get("runs") or [])

    def table(self) -> str:
        """The summary table: one line per run (model, kind, depth, seed, errors, epochs, time)."""
        return format_table(self.runs)


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def format_table(runs: Sequence[Mapping[str, Any]]) -> str:
    header = (f"{'model':<18} {'kind':<8} {'depth':>5} {'seed':>4} {'train error':>11} {'test error':>10} "
              f"{'best test':>9} {'epochs':>6} {'time':>8}")
    lines = [header, "-" * len(header)]
    for run in runs:
        time_s = run.get("train_time_s")
        lines.append(
            f"{run['model']:<18} {run['kind']:<8} {run['depth']:>5} {run['seed']:>4} "
            f"{_percent(run.get('final_train_error')):>11} {_percent(run.get('final_test_error')):>10} "
            f"{_percent(run.get('best_test_error')):>9} {run.get('epochs', '–'):>6} "
            f"{(f'{time_s:.1f} s' if isinstance(time_s, (int, float)) else '–'):>8}")
    return "\n".join(lines)


# -- summary files --------------------------------------------------------------------------------
def run_summary(run_dir: Path, *, kind: str, depth: int, seed: int) -> dict[str, Any]:
    """One entry of ``degradation.json``'s ``runs``: final/best errors and the per-epoch curve."""
    config = rundir.read_config(run_dir)
    metrics = rundir.read_metrics(run_dir)
    curve = {key: [m.get(key) if key in ("epoch", "iteration") else finite_number(m.get(key)) for m in metrics]
             for key in CURVE_KEYS}
    tests = [v for v in curve["test_error"] if v is not None]
    last = metrics[-1] if metrics else {}
    return {
        "run": run_dir.name,
        "model": config.get("model"),
        "kind": kind,
        "depth": depth,
        "seed": seed,
        "final_train_error": finite_number(last.get("train_error")),
        "final_test_error": tests[-1] if tests else None,
        "best_test_error": min(tests) if tests else None,
        "epochs": last.get("epoch"),
        "iterations": last.get("iteration"),
        "train_time_s": finite_number(last.get("elapsed_s")),
        "curve": curve,
    }


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _budget(config: Mapping[str, Any], jobs: int) -> str:
    dataset = config.get("dataset") if isinstance(config.get("dataset"), Mapping) else {}
    num_train = dataset.get("num_train")
    epochs = config.get("total_epochs")
    length = _plural(epochs, "epoch") + (f" × {num_train} training images" if num_train else "")
    schedule = config.get("schedule")
    lr = f"{schedule} lr {config.get('lr')}" + (f" (peak at {config.get('onecycle_peak_at')})" if schedule == "onecycle" else "")
    threads = config.get("threads") or "default"
    parts = [f"{length} = {config.get('total_iterations')} iterations of batch {config.get('batch_size')}", lr]
    if config.get("grad_clip"):
        parts.append(f"gradient norm clipped at {config.get('grad_clip')}")
    threads_text = _plural(threads, "thread") if isinstance(threads, int) else "default threads"
    parts.append(f"{config.get('device')}, {threads_text} per run, {_plural(jobs, 'run')} at a time")
    return ", ".join(parts)


def summarize(experiment_dir: Path, planned: Sequence[PlannedRun], *, depths: Sequence[int], seeds: Sequence[int],
              command: str | None, jobs: int = 1) -> dict[str, Any]:
    """The ``degradation.json`` content of finished runs (format in ``docs/analysis.md``)."""

    order = sorted(planned, key=lambda p: (p.kind != KIND_PLAIN, p.depth, p.seed))
    runs = [run_summary(experiment_dir / p.name, kind=p.kind, depth=p.depth, seed=p.seed) for p in order]
    first = rundir.read_config(experiment_dir / order[0].name)
    dataset = first.get("dataset") if isinstance(first.get("dataset"), Mapping) else {}
    return {
        "experiment": "degradation",
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset.get("name") or first.get("data"),
        "data_source": first.get("data_source") or dataset.get("source"),
        "recipe": first.get("recipe"),
        "epochs": first.get("total_epochs") or first.get("epochs"),
        "seeds": list(seeds),
        "depths": list(depths),
        "budget": _budget(first, jobs),
        "device": first.get("device"),
        "command": command,
        "runs": runs,
    }


def write_summary(experiment_dir: Path, summary: Mapping[str, Any]) -> list[Path]:
    """Write degradation.json, the two CSVs and the two PNGs (drawn from the saved JSON); returns the paths."""
    from reslab.report.files import read_json  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import
    from reslab.report.plots import (  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import
        plot_degradation_curves,
        plot_error_vs_depth,
        save_figure,
    )

    json_path = experiment_dir / SUMMARY_FILE
    write_json(json_path, summary, indent=1)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in summary["runs"]:
        writer.writerow(["" if run.get(k) is None else run.get(k) for k in CSV_COLUMNS])
    csv_path = experiment_dir / SUMMARY_CSV
    atomic_write_text(csv_path, buffer.getvalue())

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("run", "model", "kind", "depth", "seed") + CURVE_KEYS)
    for run in summary["runs"]:
        curve = run["curve"]
        for i in range(len(curve["epoch"])):
            writer.writerow([run["run"], run["model"], run["kind"], run["depth"], run["seed"]]
                            + ["" if curve[k][i] is None else curve[k][i] for k in CURVE_KEYS])
    curves_path = experiment_dir / CURVES_CSV
    atomic_write_text(curves_path, buffer.getvalue())

    # Drawn from the file just written, as the report does: the PNGs show what was saved.
    data = read_json(json_path)
    title = f"{data.get('dataset')}: plain vs residual networks"
    curves_png = save_figure(plot_degradation_curves(data, title=title), experiment_dir / CURVES_PNG)
    depth_png = save_figure(plot_error_vs_depth(data, title=title), experiment_dir / DEPTH_PNG)
    return [json_path, csv_path, curves_path, curves_png, depth_png]


# -- the experiment -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DegradationSettings(LaunchSettings):
    """Every option of :func:`run_degradation` and ``reslab experiment degradation``."""

    depths: tuple[int, ...] = setting(DEFAULT_DEPTHS, "weight layers, each 6n+2", metavar="D")
    data: str = setting("digits", "dataset: digits (embedded), cifar10, cifar100, synthetic, imagefolder")
    data_dir: str | None = setting(None, "where the dataset's files are (CIFAR: the folder holding "
                                         "cifar-10-batches-py)", metavar="DIR")
    download: bool = setting(False, "download the dataset if missing (CIFAR only)")
    recipe: str | None = setting(None, "training recipe name or .toml path (default: digits-degradation for the "
                                       "digits, cifar10-fast otherwise); see reslab train --list-recipes",
                                 metavar="NAME|FILE")
    seeds: int | tuple[int, ...] | None = setting(None, "train every network with seeds 0..K-1 (a list of seeds "
                                                        "from Python; default: seed 0)", metavar="K", cli=False)
    seed: int | None = setting(None, "train every network with this one seed", metavar="S", cli=False)
    epochs: int | None = setting(None, "epochs per run (replaces the recipe's length)", minimum=1)
    overrides: dict[str, Any] = setting(default_factory=dict, help="training settings, the same for every run",
                                        cli=False)  # the CLI's --set KEY=VALUE
    jobs: int = setting(1, "runs trained at the same time, each in its own process with cores/jobs threads",
                        minimum=1)
    out: str | None = setting(None, "experiment directory (default runs/degradation-DATA)", metavar="DIR")
    quiet: bool = setting(False, "print only the summary table")
    epoch_lines: bool = setting(True, "with jobs > 1, also a line per epoch of each run", cli=False)

    def check(self) -> None:
        super().check()
        validate_depths(self.depths)
        resolve_seeds(self.seeds, self.seed)
        fixed = [key for key in FIXED_KEYS if key in self.overrides]
        if fixed:
            raise ConfigError(f"--set {', '.join(fixed)}: the degradation experiment sets the model, seed, data and "
                              "run directory of each run itself; use --depths, --seeds/--seed, --data and --out")

    def command(self, experiment_dir: Path) -> str:
        """The ``reslab experiment degradation`` command that (re)makes this experiment."""
        seed_list = resolve_seeds(self.seeds, self.seed)
        resolved = self.replace(depths=tuple(validate_depths(self.depths)), out=str(experiment_dir),
                                recipe=self.recipe if self.recipe is not None else default_recipe(self.data))
        command = experiment_command(["reslab", "experiment", "degradation"], resolved, always=("depths", "data"))
        # --seeds K / --seed S: the CLI's two spellings of the seed list.
        if seed_list == list(range(len(seed_list))) and len(seed_list) > 1:
            command += f" --seeds {len(seed_list)}"
        elif len(seed_list) == 1 and seed_list[0]:
            command += f" --seed {seed_list[0]}"
        return command


def run_degradation(depths: Sequence[int] | None = None, data: str | None = None,
                    settings: DegradationSettings | Mapping[str, Any] | None = None, *,
                    say: Message | None = None, **changes: Any) -> DegradationResult:
    """Train residual and plain twins at every depth with the same recipe and seeds; summarise.

    ``depths`` (each 6n+2; default 20, 56, 110) and ``data`` (default ``digits``) as in the CLI;
    ``settings`` a :class:`DegradationSettings` (or mapping) and ``changes`` any of its fields as
    keywords: ``seeds=K`` (seeds 0..K-1) or a list, ``seed=S``, ``epochs``, ``overrides`` (further
    TrainConfig settings, the same for every run; not ``model``, ``seed``, ``data`` or ``out``),
    ``out`` (default ``runs/degradation-{data}``), ``jobs`` (runs at once, each in its own process
    with ``cores // jobs`` threads unless ``overrides`` sets them), ``quiet``, ``epoch_lines``.
    ``say``: where progress lines go (default: stderr, unless ``quiet``).

    Returns a :class:`DegradationResult`; writes ``degradation.json`` (+ CSVs and PNGs) once
    every run has finished. Rerunning with the same arguments reuses finished runs and resumes
    interrupted ones.
    """
    given = {"depths": None if depths is None else (list(depths) if not isinstance(depths, (str, int)) else [depths]),
             "data": None if data is None else str(data)}
    settings = DegradationSettings.of(settings, **{k: v for k, v in given.items() if v is not None}, **changes)
    depth_list = validate_depths(settings.depths)
    seed_list = resolve_seeds(settings.seeds, settings.seed)
    jobs, data = settings.jobs, settings.data
    recipe = settings.recipe if settings.recipe is not None else default_recipe(data)
    experiment_dir = Path(settings.out) if settings.out is not None else Path("runs") / f"degradation-{data}"
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the experiment")
    say = say or stderr_printer("reslab experiment degradation", enabled=not settings.quiet)
    threads = max(1, cpu_count() // jobs) if jobs > 1 and "threads" not in settings.overrides else None
    planned = plan_runs(depth_list, data, experiment_dir, recipe=recipe, seeds=seed_list, epochs=settings.epochs,
                        overrides=settings.overrides, data_dir=settings.data_dir, download=settings.download,
                        quiet=settings.quiet or jobs > 1, threads=threads)
    command = settings.command(experiment_dir)
    # In parallel the deepest (slowest) runs go first so the workers finish together; alone,
    # the shallow ones first, so the first results come early.
    order = sorted(planned, key=lambda p: (-p.depth if jobs > 1 else p.depth, p.kind != KIND_RESIDUAL, p.seed))
    check_runs([p.config for p in order])
    say(f"{len(order)} runs ({', '.join(p.name for p in order)}) in {experiment_dir}"
        + (f", {jobs} at a time" if jobs > 1 else ""))
    outcomes = ensure_runs([p.config for p in order], jobs=jobs, launch=settings.launch_settings(),
                           experiment_dir=experiment_dir, command=command,
                           on_start=lambda: write_settings_file(experiment_dir, settings, command),
                           say=say, epoch_lines=settings.epoch_lines)
    complete = len(outcomes) == len(order) and all(o.finished for o in outcomes)
    if not complete:
        say(f"stopped before every run finished; rerun the same command to resume: {command}")
        return DegradationResult(experiment_dir, outcomes, None, [], complete=False)
    summary = summarize(experiment_dir, planned, depths=depth_list, seeds=seed_list, command=command, jobs=jobs)
    files = write_summary(experiment_dir, summary)
    return DegradationResult(experiment_dir, outcomes, summary, files)


__all__ = [
    "DEFAULT_DEPTHS", "DegradationResult", "DegradationSettings", "PlannedRun", "run_degradation", "validate_depths", "twin_models",
    "resolve_seeds", "plan_runs", "summarize", "write_summary", "run_summary", "format_table", "default_recipe",
]
