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
import math
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    RunOutcome,
    cpu_count,
    ensure_runs,
    run_status,
    stderr_printer,
    unique_in_order,
)

DEFAULT_MODELS = ("resnet56", "plain56")
PLANES = ("random", "pca", "interp")
DEFAULT_PLANES = PLANES
SUMMARY_FILE = "landscape.json"
REUSED_FILE = "reused_from.json"
FORMAT = 1
RADII = (0.25, 0.5, 1.0)
#: Settings the experiment chooses itself; ``--set`` may not change them.
FIXED_KEYS = ("model", "seed", "out", "data")

#: Evaluation budgets by dataset. Digits: a few minutes for ResNet-56 + plain-56 on 2 CPU cores
#: (measured in docs/landscape.md); anything else (CIFAR): a budget of tens of CPU minutes.
BUDGETS: dict[str, dict[str, Any]] = {
    "digits": {"grid": "-1:1:21", "samples": 512, "hessian_samples": 256, "top_k": 1, "max_iterations": 20,
               "extreme_steps": 15, "trace_probes": 10},
    "default": {"grid": "-1:1:11", "samples": 1000, "hessian_samples": 256, "top_k": 1, "max_iterations": 20,
                "extreme_steps": 15, "trace_probes": 5},
}


def default_budget(data: str) -> dict[str, Any]:
    """The evaluation budget used for ``data`` when nothing else is asked (see :data:`BUDGETS`)."""
    return dict(BUDGETS.get(str(data).lower(), BUDGETS["default"]))


def default_recipe(data: str) -> str | None:
    """``digits-degradation`` for the digits (the demo's recipe); the trainer's default otherwise."""
    return "digits-degradation" if str(data).lower() == "digits" else None


def run_name(model: str, seed: int) -> str:
    return f"{model}-s{seed}"


# -- validation -------------------------------------------------------------------------------------
def validate_models(models: Sequence[str] | str | None) -> list[str]:
    """Unique model names in order; ModelConfigError for an unknown name, ConfigError for none."""
    from reslab.models import model_info

    if models is None:
        return list(DEFAULT_MODELS)
    values = [models] if isinstance(models, str) else list(models)
    if not values:
        raise ConfigError("--models: give at least one model, e.g. --models resnet56 plain56")
    for name in values:
        model_info(str(name))  # raises ModelConfigError naming the close matches
    return unique_in_order(str(v) for v in values)


def validate_planes(planes: Sequence[str] | str | None) -> list[str]:
    if planes is None:
        return list(DEFAULT_PLANES)
    values = [planes] if isinstance(planes, str) else list(planes)
    bad = [p for p in values if p not in PLANES]
    if bad or not values:
        given = " ".join(map(str, values)) or "none"
        raise ConfigError(f"--planes: expected one or more of {', '.join(PLANES)}, got {given}")
    return [p for p in PLANES if p in values]


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}: expected a whole number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"--{name} must be at least {minimum}, got {number}")
    return number


# -- finding and linking runs to reuse ----------------------------------------------------------------
def candidate_runs(reuse: Sequence[str | Path]) -> list[Path]:
    """Run directories in ``reuse``: each a run directory itself or a directory holding runs."""
    from reslab.analysis.common import is_run_dir
    from reslab.report.plots import natural_key

    found: list[Path] = []
    for raw in reuse:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"--reuse {path}: {'is a file' if path.exists() else 'does not exist'}; give a run "
                              "directory or an experiment directory holding runs (e.g. runs/degradation-digits)")
        if is_run_dir(path):
            found.append(path)
            continue
        children = sorted((c for c in path.iterdir() if c.is_dir() and is_run_dir(c)),
                          key=lambda c: natural_key(c.name))
        if not children:
            raise ConfigError(f"--reuse {path}: holds no run directories (subdirectories with config.json); give "
                              "the directory a `reslab train` or `reslab experiment` wrote")
        found.extend(children)
    return unique_in_order(found)


def _run_matches(run_dir: Path, config) -> bool:
    """Whether ``run_dir`` trained ``config``'s model (with its options) on its data with its seed."""
    from reslab.train import rundir

    try:
        saved = rundir.read_config(run_dir)
    except Exception:  # noqa: BLE001 - an unreadable run is simply not a match
        return False
    return (saved.get("model") == config.model and saved.get("seed") == config.seed
            and str(saved.get("data", "")).lower() == str(config.data).lower()
            and dict(saved.get("data_options") or {}) == dict(config.data_options or {})
            and dict(saved.get("model_options") or {}) == dict(config.model_options or {}))


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
            if relative.parts[0] == "analysis" or not path.is_file():
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
        (staging / REUSED_FILE).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
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


def plan_models(models: Sequence[str], data: str, experiment_dir: Path, *, recipe, seed: int, epochs: int | None,
                overrides: Mapping[str, Any], data_dir, download: bool, quiet: bool, threads: int | None
                ) -> list[ModelRun]:
    from reslab.train import resolve_config

    overrides = dict(overrides or {})
    fixed = [key for key in FIXED_KEYS if key in overrides]
    if fixed:
        raise ConfigError(f"--set {', '.join(fixed)}: the landscape experiment sets the model, seed, data and run "
                          "directory of each run itself; use --models, --seed, --data and --out")
    # Every epoch's weights, so the PCA plane of the trajectory can be drawn (a few MB each).
    overrides.setdefault("save_every", 1)
    if epochs is not None:
        overrides["epochs"] = epochs
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    if download:
        overrides["download"] = True
    if quiet:
        overrides["quiet"] = True
    if threads is not None and "threads" not in overrides:
        overrides["threads"] = threads
    planned = []
    for model in models:
        values = {**overrides, "seed": seed, "out": str(experiment_dir / run_name(model, seed))}
        config = resolve_config(recipe, model=model, data=data, overrides=values)
        planned.append(ModelRun(model, config, experiment_dir / run_name(model, seed)))
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
    from reslab.analysis.landscape.surface import DEFAULT_RANGES, grid_axis, parse_grid, pca_default_range

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
    import numpy as np

    from reslab.analysis.landscape import LandscapeResult
    from reslab.analysis.landscape.surface import computation_fingerprint, grid_points
    from reslab.errors import AnalysisError

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
    from reslab.analysis.landscape.surface import parse_grid

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


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def analyze_run(item: ModelRun, *, planes: Sequence[str], grid: str, samples: int, split: str, direction_seed: int,
                sample_seed: int, hessian: Mapping[str, Any] | None, experiment_dir: Path, dataset=None,
                workers: int | None = None, device="cpu", precision: str = "fp32", progress: bool = False,
                say: Message) -> tuple[dict[str, Any], Any]:
    """Landscapes and Hessian of one run (skipping those already computed); its ``landscape.json`` entry.

    Returns ``(entry, dataset)`` so the next run of the same data need not load it again.
    """
    from reslab.analysis.common import load_target
    from reslab.analysis.landscape import analyze_landscape, make_plane
    from reslab.analysis.landscape.surface import default_file_name
    from reslab.errors import AnalysisError
    from reslab.report.landscape_plots import landscape_summary, load_landscape
    from reslab.train import rundir

    target = load_target(item.run_dir, checkpoint="last", dataset=dataset)
    images, labels = target.samples(split, samples, seed=sample_seed)
    analysis_dir = item.run_dir / "analysis"
    metrics = rundir.read_metrics(item.run_dir)
    saved_config = rundir.read_config(item.run_dir)
    tests = [m.get("test_error") for m in metrics if _finite(m.get("test_error")) is not None]
    entry: dict[str, Any] = {
        "model": target.model_name, "kind": target.kind, "run": item.name,
        "run_dir": _relative(item.run_dir, experiment_dir), "action": item.action, "reused_from": item.reused_from,
        "recipe": saved_config.get("recipe"), "epochs": metrics[-1].get("epoch") if metrics else None,
        "train_error": _finite(metrics[-1].get("train_error")) if metrics else None,
        "test_error": _finite(tests[-1]) if tests else None, "best_test_error": min(tests) if tests else None,
        "train_time_s": _finite(metrics[-1].get("elapsed_s")) if metrics else None,
        "parameters": sum(p.numel() for p in target.model.parameters()),
        "files": {}, "seconds_now": {},
    }
    for kind in planes:
        name = default_file_name(kind, 1 if kind == "interp" else 2, split, "init", "last")
        path = analysis_dir / name
        plane_grid = _plane_grid(kind, grid)
        started = time.perf_counter()
        try:
            plane = make_plane(target, kind, seed=direction_seed, interp_from="init")
        except AnalysisError as exc:
            # A reused run without epoch checkpoints has no trajectory: say so and go on.
            entry[kind] = {"skipped": str(exc)}
            say(f"{item.name}: {kind} plane skipped: {exc}")
            continue
        saved = current_landscape(path, plane, kind, plane_grid, images, labels, precision)
        if saved is None:
            say(f"{item.name}: {kind} landscape, grid {plane_grid}, {images.shape[0]} {split} images")
            saved = analyze_landscape(target, plane=kind, grid=plane_grid, samples=samples, split=split,
                                      seed=direction_seed, sample_seed=sample_seed, interp_from="init",
                                      out=path, workers=workers, device=device, precision=precision,
                                      progress=progress, images=images, labels=labels)
            computed = True
        else:
            computed = False
        if not saved.complete:  # stopped early; the partial grid is saved
            entry[kind] = {"file": _relative(path, experiment_dir), "complete": False}
            continue
        summary = landscape_summary(load_landscape(path), radii=RADII)
        info: dict[str, Any] = {
            "file": _relative(path, experiment_dir), "grid_points": int(saved.loss.size),
            "origin_loss": _finite(saved.origin_loss), "origin_accuracy": _finite(saved.origin_accuracy),
            "max_loss": _finite(summary.get("max_loss")), "computed_now": computed,
            # As the file records them: the evaluation that completed the grid.
            "seconds": _finite(saved.settings.get("seconds_now")),
            "points_per_s": _finite(saved.settings.get("points_per_s")),
        }
        if kind == "interp":
            info["barrier"] = _finite(summary.get("barrier"))
            info["from"], info["to"] = saved.plane.get("from"), saved.plane.get("to")
        else:
            for radius in RADII:
                info[f"loss_rise_r{radius:g}"] = _finite(summary.get(f"rise@{radius:g}"))
        if kind == "pca":
            info["explained_variance_ratio"] = saved.plane.get("explained_variance_ratio")
        entry[kind] = info
        entry["files"][kind] = info["file"]
        if computed:
            entry["seconds_now"][kind] = round(time.perf_counter() - started, 2)
    if hessian is not None:
        info = _hessian(target, item, split=split, seed=direction_seed, sample_seed=sample_seed, device=device,
                        progress=progress, say=say, experiment_dir=experiment_dir, **hessian)
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


HESSIAN_KEYS = ("samples", "split", "seed", "sample_seed", "top_k", "max_iterations", "tol", "extreme_steps",
                "trace_probes")


def _hessian(target, item: ModelRun, *, split: str, seed: int, sample_seed: int, samples: int, top_k: int,
             max_iterations: int, extreme_steps: int, trace_probes: int, progress: bool, say: Message,
             experiment_dir: Path, device="cpu", tol: float = 1e-4) -> dict[str, Any]:
    """``hessian.json`` of the run's last weights: reused when its settings and weights hash match."""
    from reslab.analysis.common import load_result_file
    from reslab.analysis.hessian import analyze_hessian
    from reslab.analysis.landscape.directions import model_state, state_hash

    path = item.run_dir / "analysis" / "hessian.json"
    inputs, labels = target.samples(split, samples, seed=sample_seed)
    weights = state_hash(model_state(target.model))
    wanted = {"samples": int(inputs.shape[0]), "split": split, "seed": seed, "sample_seed": sample_seed,
              "top_k": top_k, "max_iterations": max_iterations, "tol": tol, "extreme_steps": extreme_steps,
              "trace_probes": trace_probes or None}
    data = None
    if path.is_file():
        try:
            data = load_result_file(path)
        except Exception:  # noqa: BLE001 - an unreadable file is recomputed
            data = None
    settings = (data or {}).get("settings") or {}
    computed = False
    if not (data and all(settings.get(k) == v for k, v in wanted.items())
            and settings.get("weights_sha256") == weights):
        say(f"{item.name}: Hessian on {inputs.shape[0]} {split} images (top-{top_k}, ≤{max_iterations} power "
            f"iterations, {extreme_steps} Lanczos steps, {trace_probes} trace probes)")
        result = analyze_hessian(target, samples=samples, split=split, seed=seed, sample_seed=sample_seed,
                                 top_k=top_k, max_iterations=max_iterations, tol=tol, trace=trace_probes > 0,
                                 trace_probes=max(trace_probes, 1), extreme_steps=extreme_steps, device=device,
                                 progress=progress, inputs=inputs, labels=labels)
        result.settings["weights_sha256"] = weights  # lets a rerun know these are the same weights
        result.save(path)
        data = load_result_file(path)
        computed = True
    return {
        "file": _relative(path, experiment_dir), "samples": int(inputs.shape[0]), "loss": _finite(data.get("loss")),
        "lambda_max": _finite(data.get("lambda_max")), "lambda_min": _finite(data.get("lambda_min")),
        "convexity_ratio": _finite(data.get("convexity_ratio")), "trace": _finite(data.get("trace")),
        "trace_std_error": _finite(data.get("trace_std_error")),
        "top_eigenvalues": [_finite(v) for v in data.get("top_eigenvalues") or []],
        "hessian_vector_products": data.get("hessian_vector_products"), "computed_now": computed,
        "seconds": _finite(data.get("seconds")),
    }


# -- figures ----------------------------------------------------------------------------------------
def write_figures(experiment_dir: Path, entries: Sequence[Mapping[str, Any]], title: str) -> list[Path]:
    """Side-by-side PNGs of every plane computed for all models, each figure on one shared scale."""
    from reslab.report.landscape_plots import (
        load_landscape,
        plot_contours,
        plot_landscape_1d,
        plot_surfaces_3d,
        plot_trajectories,
    )
    from reslab.report.plots import save_figure

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
    value = _finite(value)
    return "–" if value is None else format(value, spec)


def format_table(models: Sequence[Mapping[str, Any]]) -> str:
    """One line per model: test error, loss at the origin, loss rises, λmax, λmin, |λmin/λmax|, trace."""
    header = (f"{'run':<22} {'kind':<8} {'test err':>8} {'loss@0':>8} {'rise≤0.5':>9} {'rise≤1':>8} "
              f"{'λmax':>9} {'λmin':>9} {'|λmin/λmax|':>11} {'trace':>10}")
    lines = [header, "-" * len(header)]
    for m in models:
        test = _finite(m.get("test_error"))
        lines.append(
            f"{m.get('run', '?'):<22} {m.get('kind', '?'):<8} {('–' if test is None else f'{100 * test:.2f}%'):>8} "
            f"{_num(m.get('loss_at_origin')):>8} {_num(m.get('loss_rise_r0.5')):>9} {_num(m.get('loss_rise_r1')):>8} "
            f"{_num(m.get('lambda_max')):>9} {_num(m.get('lambda_min')):>9} {_num(m.get('convexity_ratio')):>11} "
            f"{_num(m.get('trace')):>10}")
    return "\n".join(lines)


def command_line(models: Sequence[str], data: str, *, recipe, seed: int, epochs, overrides, data_dir, download,
                 grid: str, samples: int, split: str, direction_seed: int, planes: Sequence[str], hessian: bool,
                 hessian_budget: Mapping[str, Any], reuse: Sequence[Any], out: Path, jobs: int,
                 threads: int | None = None, device: str = "auto", precision: str = "fp32") -> str:
    """The ``reslab experiment landscape`` command that (re)makes this experiment."""
    parts = ["reslab", "experiment", "landscape", "--models", *models, "--data", data]
    if data_dir is not None:
        parts += ["--data-dir", str(data_dir)]
    if download:
        parts.append("--download")
    if recipe is not None:
        parts += ["--recipe", str(recipe)]
    if seed:
        parts += ["--seed", str(seed)]
    if epochs is not None:
        parts += ["--epochs", str(epochs)]
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            parts += [arg for k, v in value.items() for arg in ("--set", f"{key}.{k}={_toml(v)}")]
        else:
            parts += ["--set", f"{key}={_toml(value)}"]
    parts += [f"--grid={grid}", "--samples", str(samples)]
    if split != "train":
        parts += ["--split", split]
    if direction_seed:
        parts += ["--direction-seed", str(direction_seed)]
    parts += ["--planes", *planes]
    if precision != "fp32":
        parts += ["--precision", precision]
    if hessian:
        parts += ["--hessian-samples", str(hessian_budget["samples"]), "--top-k", str(hessian_budget["top_k"]),
                  "--hessian-iterations", str(hessian_budget["max_iterations"]),
                  "--extreme-steps", str(hessian_budget["extreme_steps"]),
                  "--trace-probes", str(hessian_budget["trace_probes"])]
    else:
        parts.append("--no-hessian")
    if reuse:
        parts += ["--reuse", *map(str, reuse)]
    if jobs > 1:
        parts += ["--jobs", str(jobs)]
    if device not in (None, "auto"):
        parts += ["--device", str(device)]
    if threads is not None:
        parts += ["--threads", str(threads)]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return str(value)


# -- the experiment ---------------------------------------------------------------------------------
def run_landscape_experiment(
    models: Sequence[str] | None = DEFAULT_MODELS,
    data: str = "digits",
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    recipe: str | Path | None = None,
    seed: int = 0,
    epochs: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    grid: str | None = None,
    samples: int | None = None,
    split: str = "train",
    direction_seed: int = 0,
    sample_seed: int = 0,
    planes: Sequence[str] | None = DEFAULT_PLANES,
    hessian: bool = True,
    hessian_samples: int | None = None,
    top_k: int | None = None,
    hessian_iterations: int | None = None,
    extreme_steps: int | None = None,
    trace_probes: int | None = None,
    reuse: Sequence[str | Path] = (),
    out: str | Path | None = None,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    workers: int | None = None,
    quiet: bool = False,
    progress: bool | None = None,
    say: Message | None = None,
) -> LandscapeExperimentResult:
    """Train (or reuse) the models, then compare their loss landscapes and curvature.

    Args:
        models: model names (default ``resnet56 plain56``), trained with the same recipe and seed.
        data, data_dir, download: the dataset (``digits``, ``cifar10`` with ``data_dir``, …).
        recipe: training recipe (default ``digits-degradation`` for the digits, else the
            trainer's default, ``cifar10-fast``); ``epochs`` and ``overrides`` (``--set``)
            change it for every run. Runs trained here save every epoch (``save_every=1``).
        seed: the training seed (runs are named ``MODEL-sSEED``).
        grid: the random plane's grid, ``START:STOP:N`` or ``N`` (default by data, see
            :data:`BUDGETS`); the PCA plane gets N×N points over the trajectory, the
            interpolation 2N−1 points over −0.5…1.5.
        samples, split, sample_seed: the images every point is evaluated on (the same for all
            models); ``direction_seed``: the random directions' seed (the same for all models).
        planes: any of ``random``, ``pca``, ``interp`` (default all; PCA is skipped, with a
            note, for runs without epoch checkpoints).
        hessian: compute the Hessian summary; ``hessian_samples``, ``top_k``,
            ``hessian_iterations`` (power iterations per eigenvalue), ``extreme_steps``
            (Lanczos steps for λmin), ``trace_probes`` (Hutchinson; 0 = no trace) set its budget.
        reuse: run or experiment directories to take finished runs from (matched by model,
            model options, seed and data); they are hard-linked into ``out``, never retrained.
        out: the experiment directory (default ``runs/landscape-{data}``).
        jobs: runs trained at the same time (each in its own process).
        device: where the analyses run (``auto``: CUDA when available); a device other than
            ``auto`` is also the training's. ``precision``: ``fp32`` (default), or ``bf16``/``fp16``
            autocast for the landscapes (much faster on GPUs; the Hessian stays in fp32).
        threads: torch CPU threads for the analyses and, unless ``overrides`` sets them, the
            training (on a busy shared machine 1 is often much faster than more).
        workers: landscape points evaluated at once on a CPU (default: the CPU cores).
        quiet: no progress lines or bars; ``progress``: tqdm bars (default: on a terminal).

    Returns a :class:`LandscapeExperimentResult` and writes ``landscape.json`` and the PNGs
    once every run and grid is complete.
    """
    import torch

    from reslab.analysis.common import progress_enabled

    models = validate_models(models)
    planes = validate_planes(planes)
    data = str(data)
    if split not in ("train", "test"):
        raise ConfigError(f"--split must be 'train' or 'test', got {split!r}")
    budget = default_budget(data)
    grid = str(grid) if grid is not None else budget["grid"]
    from reslab.analysis.landscape.surface import parse_grid

    parse_grid(grid, "--grid")
    samples = _positive("samples", samples if samples is not None else budget["samples"])
    hessian_budget = {
        "samples": _positive("hessian-samples", hessian_samples if hessian_samples is not None
                             else budget["hessian_samples"]),
        "top_k": _positive("top-k", top_k if top_k is not None else budget["top_k"], 0),
        "max_iterations": _positive("hessian-iterations", hessian_iterations if hessian_iterations is not None
                                    else budget["max_iterations"]),
        "extreme_steps": _positive("extreme-steps", extreme_steps if extreme_steps is not None
                                   else budget["extreme_steps"]),
        "trace_probes": _positive("trace-probes", trace_probes if trace_probes is not None
                                  else budget["trace_probes"], 0),
    }
    seed = _positive("seed", seed, 0)
    jobs = _positive("jobs", jobs)
    if threads is not None:
        threads = _positive("threads", threads)
    if workers is not None:
        workers = _positive("workers", workers)
    from reslab.utils import resolve_device

    analysis_device = resolve_device(device)
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    recipe = recipe if recipe is not None else default_recipe(data)
    experiment_dir = Path(out) if out is not None else Path("runs") / f"landscape-{data}"
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the experiment")
    say = say or stderr_printer("reslab experiment landscape", enabled=not quiet)
    progress = progress_enabled(quiet) if progress is None else progress
    overrides = dict(overrides or {})
    if device not in (None, "auto") and "device" not in overrides:
        overrides["device"] = str(device)
    train_threads = threads
    if jobs > 1 and "threads" not in overrides and threads is None:
        train_threads = max(1, cpu_count() // jobs)
    planned = plan_models(models, data, experiment_dir, recipe=recipe, seed=seed, epochs=epochs, overrides=overrides,
                          data_dir=data_dir, download=download, quiet=quiet or jobs > 1, threads=train_threads)
    command = command_line(models, data, recipe=recipe, seed=seed, epochs=epochs, overrides=overrides,
                           data_dir=data_dir, download=download, grid=grid, samples=samples, split=split,
                           direction_seed=direction_seed, planes=planes, hessian=hessian,
                           hessian_budget=hessian_budget, reuse=list(reuse or ()), out=experiment_dir, jobs=jobs,
                           threads=threads, device=device, precision=precision)
    candidates = candidate_runs(list(reuse)) if reuse else []
    started = time.perf_counter()
    experiment_dir.mkdir(parents=True, exist_ok=True)
    say(f"{len(planned)} runs ({', '.join(p.name for p in planned)}) in {experiment_dir}")
    to_train = resolve_runs(planned, candidates, say)
    outcomes = ensure_runs([p.config for p in to_train], jobs=jobs, say=say) if to_train else []
    for item, outcome in zip(to_train, outcomes):
        item.action = outcome.action
    outcomes += [RunOutcome(str(p.run_dir), p.model, "reused", True, 0.0) for p in planned if p not in to_train]
    complete = len(outcomes) == len(planned) and all(o.finished for o in outcomes)
    if not complete:
        say(f"stopped before every run finished; rerun the same command to resume: {command}")
        return LandscapeExperimentResult(experiment_dir, outcomes, None, [], complete=False)
    train_seconds = time.perf_counter() - started

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    analysis_started = time.perf_counter()
    entries = []
    dataset = None
    try:
        for item in planned:
            entry, loaded = analyze_run(
                item, planes=planes, grid=grid, samples=samples, split=split, direction_seed=direction_seed,
                sample_seed=sample_seed, hessian=hessian_budget if hessian else None, experiment_dir=experiment_dir,
                dataset=dataset, workers=workers or cpu_count(), device=analysis_device, precision=precision,
                progress=progress, say=say)
            # Twins share their data: load it once (CIFAR takes seconds to decode).
            dataset = loaded if dataset is None else dataset
            entries.append(entry)
    finally:
        torch.set_num_threads(previous_threads)
    if any(not (e.get(k) or {}).get("complete", True) for e in entries for k in planes):
        say(f"a grid is incomplete; rerun the same command to continue it: {command}")
        return LandscapeExperimentResult(experiment_dir, outcomes, None, [], complete=False)

    entries.sort(key=lambda e: (e["kind"] != "residual", e["model"]))
    first_config = _read_config(planned[0].run_dir)
    dataset_info = first_config.get("dataset") if isinstance(first_config.get("dataset"), Mapping) else {}
    summary = {
        "experiment": "landscape",
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset_info.get("name") or data,
        "data_source": first_config.get("data_source") or dataset_info.get("source"),
        "seed": seed,
        "command": command,
        "settings": {
            "grid": grid, "planes": planes, "samples": samples, "split": split, "direction_seed": direction_seed,
            "sample_seed": sample_seed, "bn_mode": "eval", "hessian": dict(hessian_budget) if hessian else None,
            "device": str(analysis_device), "precision": precision,
            "threads": threads if threads is not None else previous_threads, "workers": workers or cpu_count(),
            "radii": list(RADII),
        },
        # Wall time of this call (a rerun that reuses everything takes seconds).
        "seconds_now": {"training": round(train_seconds, 2),
                        "analyses": round(time.perf_counter() - analysis_started, 2)},
        "models": entries,
    }
    title = f"{summary['dataset']}: " + " vs ".join(e["model"] for e in entries)
    figures = write_figures(experiment_dir, entries, title)
    summary["figures"] = [f.name for f in figures]
    summary["seconds_now"]["total"] = round(time.perf_counter() - started, 2)
    json_path = experiment_dir / SUMMARY_FILE
    from reslab.utils import atomic_write_text

    atomic_write_text(json_path, json.dumps(_json_ready(summary), indent=1, allow_nan=False) + "\n")
    return LandscapeExperimentResult(experiment_dir, outcomes, summary, [json_path, *figures])


def _json_ready(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _json_ready(value.item())  # NumPy scalars
    return value


def _read_config(run_dir: Path) -> dict[str, Any]:
    from reslab.train import rundir

    return rundir.read_config(run_dir)


__all__ = [
    "BUDGETS", "DEFAULT_MODELS", "DEFAULT_PLANES", "PLANES", "LandscapeExperimentResult", "ModelRun",
    "run_landscape_experiment", "validate_models", "validate_planes", "candidate_runs", "find_reusable", "link_run",
    "current_landscape", "analyze_run", "write_figures", "format_table", "default_budget",
]
