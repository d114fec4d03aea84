"""The landscape experiment (Li et al. 2018): residual vs plain twins, surfaces and sharpness side by side.

For every model (default ``resnet56`` and its plain twin ``plain56``) one finished training run
is needed, all with the same recipe and seed. Each is trained here (saving every epoch, so the
trajectory's PCA plane can be drawn) or *reused*: a finished run of the same model, seed and
data found in ``--reuse`` directories (e.g. a degradation experiment) is hard-linked into the
experiment directory, so nothing is retrained and the source is never written to. Then, for
every run, with the same directions seed and the same samples for all models:

* the random filter-normalised 2-D surface (``landscape_random_2d.npz``),
* optionally the PCA plane of the training trajectory (``landscape_pca.npz``; needs epoch
  checkpoints) and the line init → last (``landscape_interp_init-last.npz``),
* the Hessian summary: top eigenvalue, λmin, |λmin/λmax| and the trace (``hessian.json``),

each in ``RUN_DIR/analysis/`` as ``reslab analyze landscape|hessian`` would write it::

    EXP_DIR/resnet56-s0/  EXP_DIR/plain56-s0/        run directories (trained here or linked)
    EXP_DIR/resnet56-s0/analysis/landscape_*.npz, hessian.json
    EXP_DIR/landscape.json                           the comparison (format below, docs/landscape.md)
    EXP_DIR/landscape_random_2d.png                  filled contours side by side, one colour scale
    EXP_DIR/landscape_random_2d_surface.png          the same surfaces in 3-D, one z scale
    EXP_DIR/landscape_pca.png, landscape_interp.png  when those planes were computed

Resumable: a rerun reuses finished runs (resuming interrupted ones), skips every landscape and
Hessian whose file already holds the same computation (same weights, plane, grid and samples:
checked by the landscape's fingerprint and the Hessian's settings and weights hash) and
continues partially computed grids.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch

from reslab.analysis import hessian as hessian_analysis
from reslab.analysis.common import load_target, progress_enabled
from reslab.analysis.hessian import HessianSettings, analyze_hessian
from reslab.analysis.landscape import LandscapeResult, analyze_landscape, make_plane
from reslab.analysis.landscape.evaluate import resolve_precision
from reslab.analysis.landscape.directions import model_state, state_hash
from reslab.analysis.landscape.surface import (
    DEFAULT_RANGES,
    computation_fingerprint,
    default_file_name,
    grid_axis,
    grid_points,
    parse_grid,
    pca_default_range,
)
from reslab.errors import AnalysisError, ConfigError, ReslabError
from reslab.experiments.launch.base import LaunchSettings
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    RunOutcome,
    check_runs,
    cpu_count,
    ensure_runs,
    experiment_command,
    run_status,
    stderr_printer,
    unique_in_order,
    write_settings_file,
)
from reslab.models import model_info
from reslab.settings import Settings, setting
from reslab.store import rundir
from reslab.store.jsonfiles import finite_number, json_ready, utc_now, write_json
from reslab.store.lock import LOCK_FILE
from reslab.store.results import read_result
from reslab.store.rundir import is_run_dir, same_training
from reslab.train import resolve_config
from reslab.utils import resolve_device

DEFAULT_MODELS = ("resnet56", "plain56")
PLANES = ("random", "pca", "interp")
DEFAULT_PLANES = PLANES
SUMMARY_FILE = "landscape.json"
REUSED_FILE = "reused_from.json"
FORMAT = 1
RADII = (0.25, 0.5, 1.0)
#: Settings the experiment chooses itself; ``--set`` may not change them.
FIXED_KEYS = ("model", "seed", "out", "data")

Plane = Literal["random", "pca", "interp"]


@dataclass(frozen=True)
class LandscapeExperimentSettings(LaunchSettings):
    """Every option of :func:`run_landscape_experiment` and ``reslab experiment landscape``.

    The evaluation options left ``None`` (grid, samples and the Hessian's) come from the
    dataset's :func:`default_budget`.
    """

    models: tuple[str, ...] = setting(DEFAULT_MODELS, "models to compare, trained with the same recipe and seed",
                                      metavar="MODEL")
    data: str = setting("digits", "dataset: digits (embedded), cifar10, cifar100, synthetic, imagefolder")
    data_dir: str | None = setting(None, "where the dataset's files are (CIFAR: the folder holding "
                                         "cifar-10-batches-py)", metavar="DIR")
    download: bool = setting(False, "download the dataset if missing (CIFAR only)")
    # -- training
    recipe: str | None = setting(None, "training recipe name or .toml path (default: digits-degradation for the "
                                       "digits, the trainer's default otherwise)", metavar="NAME|FILE")
    epochs: int | None = setting(None, "epochs per run (replaces the recipe's length)", minimum=1)
    seed: int = setting(0, "training seed of every run (runs are named MODEL-sSEED)", minimum=0)
    overrides: dict[str, Any] = setting(default_factory=dict, help="training settings, the same for every run",
                                        cli=False)  # the CLI's --set KEY=VALUE
    jobs: int = setting(1, "runs trained at the same time (each in its own process)", minimum=1)
    reuse: tuple[str, ...] = setting((), "take finished runs of the same model, seed and data from these run or "
                                         "experiment directories instead of training (hard-linked into --out; never "
                                         "retrained)", metavar="EXP_OR_RUN_DIR")
    # -- landscapes
    grid: str | None = setting(None, "grid of the random plane along both directions, START:STOP:N or N points over "
                                     "-1..1; the PCA plane gets N×N points over the trajectory, the interpolation "
                                     "2N−1 over −0.5…1.5 (negative bounds: --grid=-1:1:21)", metavar="START:STOP:N")
    samples: int | None = setting(None, "images every point is evaluated on", minimum=1)
    split: Literal["train", "test"] = setting("train", "which split")
    direction_seed: int = setting(0, "seed of the random directions, the same for every model", minimum=0)
    sample_seed: int = setting(0, "seed of the choice of --samples images", minimum=0, cli=False)
    planes: tuple[Plane, ...] = setting(DEFAULT_PLANES, "planes to compute (pca needs epoch checkpoints and is "
                                                        "skipped with a note for runs without them)")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = setting(
        "fp32", "fp32, bf16/fp16 autocast for the landscapes (much faster on GPUs and CPUs with bf16 units; "
                "losses differ slightly), or auto: bf16 where the hardware has it")
    workers: int | None = setting(None, "CPU: landscape points evaluated at once, one thread each (default: the "
                                        "cores)", minimum=1)
    # -- curvature
    hessian: bool = setting(True, "compute λmax, λmin, |λmin/λmax| and the trace")
    hessian_samples: int | None = setting(None, "images the Hessian's loss averages over", minimum=1)
    top_k: int | None = setting(None, "top eigenvalues (Lanczos, the Hessian default)", minimum=0)
    hessian_iterations: int | None = setting(None, "Hessian-vector products for the top eigenvalues at most (power: per eigenvalue)", minimum=1)
    extreme_steps: int | None = setting(None, "Lanczos steps for λmin", minimum=1)
    trace_probes: int | None = setting(None, "Hutchinson probes for the trace; 0 = no trace", minimum=0)
    # -- where and how
    device: str = setting("auto", "where to train and analyse: auto (CUDA when available), cpu, cuda, cuda:1",
                          metavar="DEVICE")
    threads: int | None = setting(None, "torch CPU threads for the analyses and the training (default: torch's "
                                        "choice; on a busy shared machine 1 is often much faster)", minimum=1)
    out: str | None = setting(None, "experiment directory (default runs/landscape-DATA)", metavar="DIR")
    quiet: bool = setting(False, "print only the summary table")

    def check(self) -> None:
        super().check()
        if not self.models:
            raise ConfigError("--models: give at least one model, e.g. --models resnet56 plain56")
        if not self.planes:
            raise ConfigError(f"--planes: expected one or more of {', '.join(PLANES)}, got none")
        if self.grid is not None:
            parse_grid(self.grid, "--grid")
        fixed = [key for key in FIXED_KEYS if key in self.overrides]
        if fixed:
            raise ConfigError(f"--set {', '.join(fixed)}: the landscape experiment sets the model, seed, data and run "
                              "directory of each run itself; use --models, --seed, --data and --out")


@dataclass(frozen=True)
class LandscapeBudget:
    """How much evaluation a dataset gets when the user asks for nothing else."""

    grid: str
    samples: int
    hessian: HessianSettings


def default_budget(data: str) -> LandscapeBudget:
    """The evaluation budget of ``data``: digits — a few minutes for ResNet-56 + plain-56 on 2 CPU
    cores (measured in docs/landscape.md); anything else (CIFAR) — tens of CPU minutes.

    The Hessian's budget is a :class:`~reslab.analysis.hessian.HessianSettings`: what it does not
    set (``tol``, ``min_method``, …) is the analysis's own default.
    """
    # Looked up at call time, so the analysis's settings class is the one source of its defaults.
    settings_class = hessian_analysis.HessianSettings
    if str(data).lower() == "digits":
        return LandscapeBudget("-1:1:21", 512, settings_class(samples=256, top_k=1, max_iterations=20,
                                                              extreme_steps=15, trace=True, trace_probes=10))
    return LandscapeBudget("-1:1:11", 1000, settings_class(samples=256, top_k=1, max_iterations=20, extreme_steps=15,
                                                           trace=True, trace_probes=5))


def default_recipe(data: str) -> str | None:
    """``digits-degradation`` for the digits (the demo's recipe); the trainer's default otherwise."""
    return "digits-degradation" if str(data).lower() == "digits" else None


def run_name(model: str, seed: int) -> str:
    return f"{model}-s{seed}"


# -- finding and linking runs to reuse ----------------------------------------------------------------
def candidate_runs(reuse: Sequence[str | Path]) -> list[Path]:
    """Run directories in ``reuse``: each a run directory itself or a directory holding runs."""
    found: list[Path] = []
    for raw in reuse:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"--reuse {path}: {'is a file' if path.exists() else 'does not exist'}; give a run "
                              "directory or an experiment directory holding runs (e.g. runs/degradation-digits)")
        if is_run_dir(path):
            found.append(path)
            continue
        children = rundir.experiment_runs(path)
        if not children:
            raise ConfigError(f"--reuse {path}: holds no run directories (subdirectories with config.json); give "
                              "the directory a `reslab train` or `reslab experiment` wrote")
        found.extend(children)
    return unique_in_order(found)


def _run_matches(run_dir: Path, config) -> bool:
    """Whether ``run_dir`` trained ``config``'s model (with its options) on its data with its seed."""
    try:
        saved = rundir.read_config(run_dir)
    except ReslabError:  # an unreadable run is simply not a match
        return False
    return same_training(saved, config.to_dict())


def find_reusable(config, candidates: Sequence[Path]) -> Path | None:
    """The first finished run among ``candidates`` matching ``config``'s model, options, seed and data.

    ConfigError when matching runs exist but none has finished (reusing half a run would compare
    an undertrained network; finish it first).
    """
    matches = [c for c in candidates if _run_matches(c, config)]
    for match in matches:
        if run_status(match) == "finished":
            return match
    if matches:
        listing = ", ".join(f"{m} ({run_status(m)})" for m in matches)
        raise ConfigError(
            f"--reuse: found {config.model} seed {config.seed} on {config.data} in {listing}, but not finished; "
            "finish it first (rerun the command that trained it), or leave it out of --reuse to train one here")
    return None


def link_run(source: Path, dest: Path) -> tuple[int, int]:
    """Make ``dest`` a copy of the finished run ``source`` (its ``analysis/`` left out).

    Checkpoints are hard-linked (no disk space; the trainer replaces files atomically, so the
    source can be resumed later without touching this copy), other files copied; where links
    are impossible (another file system), everything is copied. Built in a temporary directory
    and renamed, so an interrupted link leaves nothing half-made. Returns (linked, copied).
    """
    staging = dest.with_name(dest.name + ".linking")
    shutil.rmtree(staging, ignore_errors=True)
    linked = copied = 0
    try:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if relative.parts[0] == "analysis" or relative.name == LOCK_FILE or not path.is_file():
                continue
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative.parts[0] == "checkpoints":
                try:
                    os.link(path, target)
                    linked += 1
                    continue
                except OSError:
                    pass
            shutil.copy2(path, target)
            copied += 1
        marker = {"source": str(source), "source_resolved": str(source.resolve()), "linked_files": linked,
                  "copied_files": copied, "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        write_json(staging / REUSED_FILE, marker, indent=1)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return linked, copied


# -- the plan ---------------------------------------------------------------------------------------
@dataclass
class ModelRun:
    """One model of the experiment: its training config, run directory and what happened to it."""

    model: str
    config: Any  # TrainConfig
    run_dir: Path
    reused_from: str | None = None
    action: str = ""  # trained / resumed / restarted / reused / linked

    @property
    def name(self) -> str:
        return self.run_dir.name


def plan_models(plan: "LandscapePlan") -> list[ModelRun]:
    """One training config per model: the recipe, ``--set``, and what the experiment fixes itself."""
    settings = plan.settings
    overrides = dict(settings.overrides)
    # Every epoch's weights, so the PCA plane of the trajectory can be drawn (a few MB each).
    overrides.setdefault("save_every", 1)
    if settings.epochs is not None:
        overrides["epochs"] = settings.epochs
    if settings.data_dir is not None:
        overrides["data_dir"] = str(settings.data_dir)
    if settings.download:
        overrides["download"] = True
    if settings.quiet or settings.jobs > 1:
        overrides["quiet"] = True
    if settings.device not in (None, "auto"):
        overrides.setdefault("device", str(settings.device))
    if plan.train_threads is not None:
        overrides.setdefault("threads", plan.train_threads)
    planned = []
    for model in settings.models:
        run_dir = plan.experiment_dir / run_name(model, settings.seed)
        values = {**overrides, "seed": settings.seed, "out": str(run_dir)}
        config = resolve_config(plan.recipe, model=model, data=settings.data, overrides=values)
        planned.append(ModelRun(model, config, run_dir))
    return planned


def _reused_marker(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / REUSED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve_runs(planned: Sequence[ModelRun], candidates: Sequence[Path], say: Message) -> list[ModelRun]:
    """Link reusable runs into the experiment; return the runs that still need :func:`ensure_runs`.

    A run directory already in the experiment wins (one linked earlier is used as it is; one
    trained here goes through ``ensure_run``, which checks its settings); else the first
    finished match among ``candidates`` (:func:`candidate_runs` of ``--reuse``); else it is trained.
    """
    to_train = []
    for item in planned:
        marker = _reused_marker(item.run_dir)
        if marker is not None:
            if run_status(item.run_dir) != "finished":
                raise ConfigError(f"{item.run_dir} was linked from {marker.get('source')} but holds no finished run; "
                                  "remove it and rerun")
            if not _run_matches(item.run_dir, item.config):
                raise ConfigError(f"{item.run_dir} holds a run linked from {marker.get('source')} with another model, "
                                  "seed or data than asked now; give a fresh --out directory for the new settings")
            item.action, item.reused_from = "reused", str(marker.get("source"))
            say(f"{item.name}: finished (linked earlier from {item.reused_from}), reused")
            continue
        if (item.run_dir / "config.json").is_file() or not candidates:
            # A run of this experiment (trained earlier, or --reuse names the experiment itself):
            # ensure_run reuses, resumes or trains it, refusing other settings.
            to_train.append(item)
            continue
        source = find_reusable(item.config, candidates)
        if source is None:
            say(f"{item.name}: no finished {item.model} (seed {item.config.seed}, {item.config.data}) in --reuse; "
                "training it here")
            to_train.append(item)
        else:
            linked, copied = link_run(source, item.run_dir)
            item.action, item.reused_from = "linked", str(source)
            say(f"{item.name}: reusing the finished run {source} (checkpoints hard-linked: {linked}, "
                f"files copied: {copied})")
    return to_train


# -- analyses ---------------------------------------------------------------------------------------
def _axes(kind: str, plane, grid: str):
    """The grid axes ``analyze_landscape`` builds for ``grid`` on ``plane`` (x, y or None)."""
    spec = parse_grid(grid, "--grid")
    if kind == "pca":
        trajectory = plane.trajectory.numpy()
        return grid_axis(spec, pca_default_range(trajectory, 0)), grid_axis(spec, pca_default_range(trajectory, 1))
    x = grid_axis(spec, DEFAULT_RANGES[kind])
    return x, (grid_axis(spec, DEFAULT_RANGES["random"]) if plane.dims == 2 else None)


def current_landscape(path: Path, plane, kind: str, grid: str, images, labels, precision: str = "fp32"):
    """The saved landscape at ``path`` if it is complete and of exactly this computation, else None.

    "Exactly" is the evaluator's own fingerprint: the plane's tensors (weights and directions),
    the grid points and the samples.
    """

    if not path.is_file():
        return None
    try:
        saved = LandscapeResult.load(path)
    except (AnalysisError, ValueError, KeyError):
        return None
    if not saved.complete:
        return None
    x, y = _axes(kind, plane, grid)
    points = np.concatenate([grid_points(x, y), np.zeros((1, plane.dims))])
    if saved.fingerprint != computation_fingerprint(plane, points, images, labels, precision):
        return None
    return saved


def _plane_grid(kind: str, grid: str) -> str:
    """The grid asked of each plane: the random plane ``grid`` as given; PCA the same number of points
    over the trajectory's extent; the interpolation twice as many over −0.5…1.5 (a line is cheap)."""

    points = parse_grid(grid, "--grid")[2]
    if kind == "pca":
        return str(points)
    if kind == "interp":
        return str(max(2 * points - 1, 3))
    return grid


def _relative(path: str | Path | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return os.path.relpath(Path(path), base)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)


def analyze_run(item: ModelRun, plan: "LandscapePlan", *, dataset=None, progress: bool = False,
                say: Message) -> tuple[dict[str, Any], Any]:
    """Landscapes and Hessian of one run (skipping those already computed); its ``landscape.json`` entry.

    Returns ``(entry, dataset)`` so the next run of the same data need not load it again.
    """
    settings = plan.settings
    target = load_target(item.run_dir, checkpoint="last", dataset=dataset)
    samples = target.samples(settings.split, plan.samples, seed=settings.sample_seed)
    entry = _run_entry(item, plan, target)
    for kind in settings.planes:
        started = time.perf_counter()
        info = _plane_entry(item, plan, target, kind, samples, progress, say)
        entry[kind] = info
        if "file" in info and info.get("complete", True):
            entry["files"][kind] = info["file"]
            if info["computed_now"]:
                entry["seconds_now"][kind] = round(time.perf_counter() - started, 2)
    if plan.hessian is not None:
        info = _hessian(target, item, plan, progress=progress, say=say)
        entry["hessian"] = info
        entry["files"]["hessian"] = info["file"]
        if info.get("computed_now"):
            entry["seconds_now"]["hessian"] = info["seconds"]
    random = entry.get("random") or {}
    curvature = entry.get("hessian") or {}
    # The headline numbers, flat, for tables and scripts.
    entry.update({
        "loss_at_origin": random.get("origin_loss"),
        "loss_rise_r0.5": random.get("loss_rise_r0.5"), "loss_rise_r1": random.get("loss_rise_r1"),
        "lambda_max": curvature.get("lambda_max"), "lambda_min": curvature.get("lambda_min"),
        "convexity_ratio": curvature.get("convexity_ratio"), "trace": curvature.get("trace"),
    })
    return entry, target.dataset


def _run_entry(item: ModelRun, plan: "LandscapePlan", target) -> dict[str, Any]:
    """What ``landscape.json`` says of the run itself: its model, training and errors."""
    metrics = rundir.read_metrics(item.run_dir)
    saved_config = rundir.read_config(item.run_dir)
    tests = [m.get("test_error") for m in metrics if finite_number(m.get("test_error")) is not None]
    return {
        "model": target.model_name, "kind": target.kind, "run": item.name,
        "run_dir": _relative(item.run_dir, plan.experiment_dir), "action": item.action, "reused_from": item.reused_from,
        "recipe": saved_config.get("recipe"), "epochs": metrics[-1].get("epoch") if metrics else None,
        "train_error": finite_number(metrics[-1].get("train_error")) if metrics else None,
        "test_error": finite_number(tests[-1]) if tests else None, "best_test_error": min(tests) if tests else None,
        "train_time_s": finite_number(metrics[-1].get("elapsed_s")) if metrics else None,
        "parameters": sum(p.numel() for p in target.model.parameters()),
        "files": {}, "seconds_now": {},
    }


def _plane_entry(item: ModelRun, plan: "LandscapePlan", target, kind: str, samples, progress: bool,
                 say: Message) -> dict[str, Any]:
    """One plane's landscape of the run (computed unless the file already holds it) and its summary."""
    # Lazy: the report room draws with matplotlib, which `reslab --help` should not have to import.
    from reslab.report.landscape_plots import landscape_summary, load_landscape  # noqa: PLC0415

    settings, (images, labels) = plan.settings, samples
    path = item.run_dir / "analysis" / default_file_name(kind, 1 if kind == "interp" else 2, settings.split,
                                                         "init", "last")
    plane_grid = _plane_grid(kind, plan.grid)
    try:
        plane = make_plane(target, kind, seed=settings.direction_seed, interp_from="init")
    except AnalysisError as exc:
        # A reused run without epoch checkpoints has no trajectory: say so and go on.
        say(f"{item.name}: {kind} plane skipped: {exc}")
        return {"skipped": str(exc)}
    saved = current_landscape(path, plane, kind, plane_grid, images, labels,
                              resolve_precision(settings.precision, plan.device)[0])
    computed = saved is None
    if computed:
        say(f"{item.name}: {kind} landscape, grid {plane_grid}, {images.shape[0]} {settings.split} images")
        saved = analyze_landscape(target, plane=kind, grid=plane_grid, samples=plan.samples, split=settings.split,
                                  seed=settings.direction_seed, sample_seed=settings.sample_seed, interp_from="init",
                                  out=path, workers=plan.workers, device=str(plan.device),
                                  precision=settings.precision, progress=progress, images=images, labels=labels,
                                  force=True)  # the experiment's own run: recomputed when its settings change
    if not saved.complete:  # stopped early; the partial grid is saved
        return {"file": _relative(path, plan.experiment_dir), "complete": False}
    summary = landscape_summary(load_landscape(path), radii=RADII)
    info: dict[str, Any] = {
        "file": _relative(path, plan.experiment_dir), "grid_points": int(saved.loss.size),
        "origin_loss": finite_number(saved.origin_loss), "origin_accuracy": finite_number(saved.origin_accuracy),
        "max_loss": finite_number(summary.get("max_loss")), "computed_now": computed,
        # As the file records them: the evaluation that completed the grid.
        "seconds": finite_number(saved.settings.get("seconds_now")),
        "points_per_s": finite_number(saved.settings.get("points_per_s")),
    }
    if kind == "interp":
        info["barrier"] = finite_number(summary.get("barrier"))
        info["from"], info["to"] = saved.plane.get("from"), saved.plane.get("to")
    else:
        for radius in RADII:
            info[f"loss_rise_r{radius:g}"] = finite_number(summary.get(f"rise@{radius:g}"))
    if kind == "pca":
        info["explained_variance_ratio"] = saved.plane.get("explained_variance_ratio")
    return info


def _hessian(target, item: ModelRun, plan: "LandscapePlan", *, progress: bool, say: Message) -> dict[str, Any]:
    """``hessian.json`` of the run's last weights: reused when its settings and weights hash match."""
    hessian = plan.hessian
    path = item.run_dir / "analysis" / "hessian.json"
    inputs, labels = target.samples(hessian.split, hessian.samples, seed=hessian.sample_seed)
    weights = state_hash(model_state(target.model))
    wanted = {"samples": int(inputs.shape[0]), "split": hessian.split, "seed": hessian.seed,
              "sample_seed": hessian.sample_seed, "top_k": hessian.top_k, "max_iterations": hessian.max_iterations,
              "tol": hessian.tol, "extreme_steps": hessian.extreme_steps, "top_method": hessian.top_method,
              "trace_probes": hessian.trace_probes if hessian.trace else None}
    data = None
    if path.is_file():
        try:
            data = read_result(path)
        except ReslabError:  # an unreadable file is recomputed
            data = None
    recorded = (data or {}).get("settings") or {}
    computed = False
    if not (data and all(recorded.get(k) == v for k, v in wanted.items())
            and recorded.get("weights_sha256") == weights):
        say(f"{item.name}: Hessian on {inputs.shape[0]} {hessian.split} images (top-{hessian.top_k}, "
            f"{hessian.top_method}, ≤{hessian.max_iterations} products, {hessian.extreme_steps} Lanczos steps, "
            f"{hessian.trace_probes if hessian.trace else 0} trace probes)")
        result = analyze_hessian(target, hessian, progress=progress, inputs=inputs, labels=labels)
        result.settings["weights_sha256"] = weights  # lets a rerun know these are the same weights
        result.save(path, force=True)  # the experiment's own run: recomputed when its settings change
        data = read_result(path)
        computed = True
    return {
        "file": _relative(path, plan.experiment_dir), "samples": int(inputs.shape[0]),
        "loss": finite_number(data.get("loss")), "lambda_max": finite_number(data.get("lambda_max")),
        "lambda_min": finite_number(data.get("lambda_min")), "convexity_ratio": finite_number(data.get("convexity_ratio")),
        "trace": finite_number(data.get("trace")), "trace_std_error": finite_number(data.get("trace_std_error")),
        "top_eigenvalues": [finite_number(v) for v in data.get("top_eigenvalues") or []],
        "hessian_vector_products": data.get("hessian_vector_products"), "computed_now": computed,
        "seconds": finite_number(data.get("seconds")),
    }


# -- figures ----------------------------------------------------------------------------------------
def write_figures(experiment_dir: Path, entries: Sequence[Mapping[str, Any]], title: str) -> list[Path]:
    """Side-by-side PNGs of every plane computed for all models, each figure on one shared scale."""
    # Lazy: the report room draws with matplotlib, which `reslab --help` should not have to import.
    from reslab.report.landscape_plots import (  # noqa: PLC0415
        load_landscape,
        plot_contours,
        plot_landscape_1d,
        plot_surfaces_3d,
        plot_trajectories,
    )
    from reslab.report.plots import save_figure  # noqa: PLC0415

    written = []
    for kind in PLANES:
        datas = []
        for entry in entries:
            file = (entry.get(kind) or {}).get("file")
            if file and (entry.get(kind) or {}).get("complete", True):
                data = load_landscape(experiment_dir / file)
                if data is not None:
                    datas.append(data)
        if not datas:
            continue
        # Residual first, as in the report.
        datas.sort(key=lambda d: ((d.get("target") or {}).get("kind") != "residual"))
        if kind == "random":
            written.append(save_figure(plot_contours(datas, filled=True, title=f"{title}: random filter-normalised "
                                                     "plane, one colour scale"),
                                       experiment_dir / "landscape_random_2d.png"))
            written.append(save_figure(plot_surfaces_3d(datas, title=f"{title}: the same surfaces in 3-D"),
                                       experiment_dir / "landscape_random_2d_surface.png"))
        elif kind == "pca":
            written.append(save_figure(plot_trajectories(datas, title=f"{title}: PCA plane of each training "
                                                         "trajectory"), experiment_dir / "landscape_pca.png"))
        else:
            written.append(save_figure(plot_landscape_1d(datas, title=f"{title}: init → last"),
                                       experiment_dir / "landscape_interp.png"))
    return written


# -- the result -------------------------------------------------------------------------------------
class LandscapeExperimentResult(ExperimentResult):
    """What :func:`run_landscape_experiment` did and measured; ``summary`` is ``landscape.json``."""

    @property
    def models(self) -> list[dict[str, Any]]:
        return list((self.summary or {}).get("models") or [])

    def table(self) -> str:
        return format_table(self.models)


def _num(value: Any, spec: str = ".4g") -> str:
    value = finite_number(value)
    return "–" if value is None else format(value, spec)


def format_table(models: Sequence[Mapping[str, Any]]) -> str:
    """One line per model: test error, loss at the origin, loss rises, λmax, λmin, |λmin/λmax|, trace."""
    header = (f"{'run':<22} {'kind':<8} {'test err':>8} {'loss@0':>8} {'rise≤0.5':>9} {'rise≤1':>8} "
              f"{'λmax':>9} {'λmin':>9} {'|λmin/λmax|':>11} {'trace':>10}")
    lines = [header, "-" * len(header)]
    for m in models:
        test = finite_number(m.get("test_error"))
        lines.append(
            f"{m.get('run', '?'):<22} {m.get('kind', '?'):<8} {('–' if test is None else f'{100 * test:.2f}%'):>8} "
            f"{_num(m.get('loss_at_origin')):>8} {_num(m.get('loss_rise_r0.5')):>9} {_num(m.get('loss_rise_r1')):>8} "
            f"{_num(m.get('lambda_max')):>9} {_num(m.get('lambda_min')):>9} {_num(m.get('convexity_ratio')):>11} "
            f"{_num(m.get('trace')):>10}")
    return "\n".join(lines)


# -- the experiment ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LandscapePlan:
    """The experiment with every choice made: settings, the dataset's budget applied, and where."""

    settings: LandscapeExperimentSettings
    grid: str
    samples: int
    hessian: HessianSettings | None  # None: no Hessian
    experiment_dir: Path
    recipe: str | None
    device: Any  # torch.device of the analyses
    workers: int
    train_threads: int | None

    @property
    def command(self) -> str:
        """The ``reslab experiment landscape`` command that (re)makes this experiment, budget spelled out."""
        s = self.settings
        resolved = s.replace(grid=self.grid, samples=self.samples, recipe=None if self.recipe is None else
                             str(self.recipe), out=str(self.experiment_dir))
        if self.hessian is not None:
            h = self.hessian
            resolved = resolved.replace(hessian_samples=h.samples, top_k=h.top_k, hessian_iterations=h.max_iterations,
                                        extreme_steps=h.extreme_steps, trace_probes=h.trace_probes if h.trace else 0)
        return experiment_command(["reslab", "experiment", "landscape"], resolved,
                                  always=("models", "data", "grid", "samples", "planes"))


def plan_experiment(settings: LandscapeExperimentSettings) -> LandscapePlan:
    """Check the settings against the world (models, devices, --out) and apply the dataset's budget."""
    for name in settings.models:
        model_info(str(name))  # raises ModelConfigError naming the close matches
    settings = settings.replace(models=tuple(unique_in_order(settings.models)),
                                planes=tuple(p for p in PLANES if p in settings.planes))
    budget = default_budget(settings.data)
    hessian = None
    if settings.hessian:
        trace_probes = settings.trace_probes if settings.trace_probes is not None else budget.hessian.trace_probes
        asked = {"samples": settings.hessian_samples, "top_k": settings.top_k,
                 "max_iterations": settings.hessian_iterations, "extreme_steps": settings.extreme_steps}
        hessian = budget.hessian.replace(
            split=settings.split, seed=settings.direction_seed, sample_seed=settings.sample_seed,
            trace=trace_probes > 0, trace_probes=max(trace_probes, 1),
            **{key: value for key, value in asked.items() if value is not None})
    device = resolve_device(settings.device)
    if hessian is not None:
        hessian = hessian.replace(device=str(device))
    experiment_dir = Path(settings.out) if settings.out is not None else Path("runs") / f"landscape-{settings.data}"
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the experiment")
    train_threads = settings.threads
    if settings.jobs > 1 and "threads" not in settings.overrides and settings.threads is None:
        train_threads = max(1, cpu_count() // settings.jobs)
    return LandscapePlan(
        settings=settings, grid=settings.grid if settings.grid is not None else budget.grid,
        samples=settings.samples if settings.samples is not None else budget.samples, hessian=hessian,
        experiment_dir=experiment_dir,
        recipe=settings.recipe if settings.recipe is not None else default_recipe(settings.data),
        device=device, workers=settings.workers or cpu_count(), train_threads=train_threads)


def run_landscape_experiment(models: Sequence[str] | None = None, data: str | None = None,
                             settings: LandscapeExperimentSettings | Mapping[str, Any] | None = None, *,
                             progress: bool | None = None, say: Message | None = None,
                             **changes: Any) -> LandscapeExperimentResult:
    """Train (or reuse) the models, then compare their loss landscapes and curvature.

    ``models`` (default ``resnet56 plain56``) and ``data`` (default ``digits``) as in the CLI;
    ``settings`` a :class:`LandscapeExperimentSettings` (or mapping), and ``changes`` any of its
    fields as keywords (``grid="-1:1:11"``, ``reuse=[dirs]``, ``overrides={"lr": 0.1}``). See the
    class for every option and :func:`default_budget` for what the dataset decides.
    ``progress``: tqdm bars (default: on a terminal); ``say``: where progress lines go.

    The steps, in order: plan (settings checked, budget applied) → train or reuse the runs →
    analyse each run → summarise (``landscape.json`` and the side-by-side PNGs, written once every
    run and grid is complete; a stopped experiment resumes with the same command).
    """
    given = {"models": None if models is None else ([models] if isinstance(models, str) else list(models)),
             "data": data}
    settings = LandscapeExperimentSettings.of(settings, **{k: v for k, v in given.items() if v is not None},
                                              **changes)
    plan = plan_experiment(settings)
    say = say or stderr_printer("reslab experiment landscape", enabled=not settings.quiet)
    progress = progress_enabled(settings.quiet) if progress is None else progress
    started = time.perf_counter()
    planned, outcomes = _train_runs(plan, say)
    if not (len(outcomes) == len(planned) and all(o.finished for o in outcomes)):
        say(f"stopped before every run finished; rerun the same command to resume: {plan.command}")
        return LandscapeExperimentResult(plan.experiment_dir, outcomes, None, [], complete=False)
    train_seconds = time.perf_counter() - started
    analysis_started = time.perf_counter()
    entries, threads = _analyse_runs(plan, planned, progress, say)
    if any(not (e.get(k) or {}).get("complete", True) for e in entries for k in settings.planes):
        say(f"a grid is incomplete; rerun the same command to continue it: {plan.command}")
        return LandscapeExperimentResult(plan.experiment_dir, outcomes, None, [], complete=False)
    seconds = {"training": round(train_seconds, 2), "analyses": round(time.perf_counter() - analysis_started, 2)}
    summary, files = _summarise(plan, planned, entries, threads, seconds, started)
    return LandscapeExperimentResult(plan.experiment_dir, outcomes, summary, files)


def _train_runs(plan: LandscapePlan, say: Message) -> tuple[list[ModelRun], list[RunOutcome]]:
    """Link reusable runs, train (or resume) the others; the runs and what happened to each."""
    planned = plan_models(plan)
    candidates = candidate_runs(list(plan.settings.reuse)) if plan.settings.reuse else []
    check_runs([p.config for p in planned])
    plan.experiment_dir.mkdir(parents=True, exist_ok=True)
    write_settings_file(plan.experiment_dir, plan.settings, plan.command)
    say(f"{len(planned)} runs ({', '.join(p.name for p in planned)}) in {plan.experiment_dir}")
    to_train = resolve_runs(planned, candidates, say)
    outcomes = ensure_runs([p.config for p in to_train], jobs=plan.settings.jobs,
                           launch=plan.settings.launch_settings(), experiment_dir=plan.experiment_dir,
                           command=plan.command, say=say) if to_train else []
    for item, outcome in zip(to_train, outcomes):
        item.action = outcome.action
    outcomes += [RunOutcome(str(p.run_dir), p.model, "reused", True, 0.0) for p in planned if p not in to_train]
    return planned, outcomes


def _analyse_runs(plan: LandscapePlan, planned: Sequence[ModelRun], progress: bool, say: Message
                  ) -> tuple[list[dict[str, Any]], int]:
    """Every run's landscapes and Hessian (those already computed are reused); entries and threads used."""
    previous_threads = torch.get_num_threads()
    if plan.settings.threads is not None:
        torch.set_num_threads(plan.settings.threads)
    entries, dataset = [], None
    try:
        for item in planned:
            entry, loaded = analyze_run(item, plan, dataset=dataset, progress=progress, say=say)
            # Twins share their data: load it once (CIFAR takes seconds to decode).
            dataset = loaded if dataset is None else dataset
            entries.append(entry)
    finally:
        torch.set_num_threads(previous_threads)
    threads = plan.settings.threads if plan.settings.threads is not None else previous_threads
    return entries, threads


def _summarise(plan: LandscapePlan, planned: Sequence[ModelRun], entries: list[dict[str, Any]], threads: int,
               seconds: dict[str, float], started: float) -> tuple[dict[str, Any], list[Path]]:
    """``landscape.json`` and the side-by-side figures."""
    s = plan.settings
    entries.sort(key=lambda e: (e["kind"] != "residual", e["model"]))
    first_config = rundir.read_config(planned[0].run_dir)
    dataset_info = first_config.get("dataset") if isinstance(first_config.get("dataset"), Mapping) else {}
    summary = {
        "experiment": "landscape",
        "format": FORMAT,
        "created": utc_now(),
        "dataset": dataset_info.get("name") or s.data,
        "data_source": first_config.get("data_source") or dataset_info.get("source"),
        "seed": s.seed,
        "command": plan.command,
        "settings": {
            "grid": plan.grid, "planes": list(s.planes), "samples": plan.samples, "split": s.split,
            "direction_seed": s.direction_seed, "sample_seed": s.sample_seed, "bn_mode": "eval",
            "hessian": _hessian_budget(plan.hessian), "device": str(plan.device), "precision": s.precision,
            "threads": threads, "workers": plan.workers, "radii": list(RADII),
        },
        # Wall time of this call (a rerun that reuses everything takes seconds).
        "seconds_now": dict(seconds),
        "models": entries,
    }
    title = f"{summary['dataset']}: " + " vs ".join(e["model"] for e in entries)
    figures = write_figures(plan.experiment_dir, entries, title)
    summary["figures"] = [f.name for f in figures]
    summary["seconds_now"]["total"] = round(time.perf_counter() - started, 2)
    json_path = write_json(plan.experiment_dir / SUMMARY_FILE, summary)
    return json_ready(summary), [json_path, *figures]


def _hessian_budget(hessian: HessianSettings | None) -> dict[str, Any] | None:
    """The Hessian's budget as ``landscape.json`` records it."""
    if hessian is None:
        return None
    return {"samples": hessian.samples, "top_k": hessian.top_k, "max_iterations": hessian.max_iterations,
            "extreme_steps": hessian.extreme_steps, "trace_probes": hessian.trace_probes if hessian.trace else 0,
            "tol": hessian.tol, "top_method": hessian.top_method}


__all__ = [
    "DEFAULT_MODELS", "LandscapeBudget", "LandscapeExperimentSettings", "LandscapePlan", "plan_experiment", "DEFAULT_PLANES", "PLANES", "LandscapeExperimentResult", "ModelRun",
    "run_landscape_experiment", "candidate_runs", "find_reusable", "link_run",
    "current_landscape", "analyze_run", "write_figures", "format_table", "default_budget",
]
