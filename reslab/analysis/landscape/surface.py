"""Loss surfaces: a grid over a plane, evaluated resumably, saved to one ``.npz`` file.

File format (read by :mod:`reslab.report.landscape_plots` with NumPy alone)::

    x            (nx,)       grid coordinates along the first direction
    y            (ny,)       along the second (empty for a 1-D landscape)
    loss         (nx,) | (ny, nx)   mean cross-entropy; loss[j, i] is at (x[i], y[j]),
                                    so ``contourf(x, y, loss)`` draws it
    accuracy     like loss   fraction of samples classified correctly
    trajectory   (n, dims)   PCA planes only: the checkpoints' coordinates (last row: the origin)
    meta         ()          a JSON string: analysis, target (model, checkpoint, run), plane
                             (kind, seeds, normalisation, explained variance, ...), settings
                             (samples, split, batch size, method, seconds), origin loss/accuracy,
                             fingerprint, directions file

A JSON file with the same stem sits next to it (the analyses' common format: the same facts,
arrays referenced by key), so ``reslab report`` finds the directory like any analysis output.
While a grid is computed, ``<stem>.partial.npz`` holds the points done so far; rerunning with
the same arguments continues from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping

import numpy as np
import torch
from safetensors import safe_open

from reslab.analysis.common import (
    default_out_dir,
    is_run_dir,
    select_samples,
)
from reslab.analysis.landscape.directions import (
    PLANE_KINDS,
    Plane,
    check_compatible,
    interpolation_line,
    load_plane_axes,
    model_state,
    parameter_names,
    random_plane,
    save_plane,
    state_hash,
)
from reslab.analysis.landscape.evaluate import LandscapeEvaluator, resolve_precision
from reslab.analysis.landscape.trajectory import pca_plane
from reslab.errors import AnalysisError, ConfigError
from reslab.settings import Settings, setting
from reslab.store.jsonfiles import finite_number, json_ready
from reslab.store.results import Result
from reslab.train import list_checkpoints
from reslab.train.checkpoint import checkpoint_path, load_weights
from reslab.utils import atomic_path

FORMAT = 1
DEFAULT_POINTS = 51
DEFAULT_RANGES = {"random": (-1.0, 1.0), "interp": (-0.5, 1.5)}
#: A PCA grid covers the trajectory's bounding box plus this fraction of its size on each side.
PCA_MARGIN = 0.2


# -- grids ---------------------------------------------------------------------------------------
def parse_grid(text: str | None, flag: str = "--grid") -> tuple[float | None, float | None, int]:
    """``"-1:1:51"`` → ``(-1.0, 1.0, 51)``; ``"51"`` → ``(None, None, 51)`` (the plane's default range)."""
    if text is None:
        return None, None, DEFAULT_POINTS
    parts = str(text).strip().split(":")
    try:
        if len(parts) == 1:
            low = high = None
            count = int(parts[0])
        elif len(parts) == 3:
            low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected START:STOP:POINTS (e.g. -1:1:51) or POINTS (e.g. 25)") from None
    if count < 1:
        raise ConfigError(f"{flag} {text!r}: the number of points must be at least 1")
    if low is not None and (not math.isfinite(low) or not math.isfinite(high) or (count > 1 and high <= low)):
        raise ConfigError(f"{flag} {text!r}: STOP must be a finite number greater than START")
    return low, high, count


def grid_axis(spec: tuple[float | None, float | None, int], default: tuple[float, float]) -> np.ndarray:
    low, high, count = spec
    low = default[0] if low is None else low
    high = default[1] if high is None else high
    return np.linspace(low, high, count) if count > 1 else np.array([low], dtype=np.float64)


def pca_default_range(trajectory: np.ndarray, axis: int) -> tuple[float, float]:
    """The trajectory's extent along ``axis`` with margins, always containing the origin."""
    values = np.concatenate([trajectory[:, axis], [0.0]])
    low, high = float(values.min()), float(values.max())
    pad = PCA_MARGIN * max(high - low, 1e-12)
    return low - pad, high + pad


def grid_points(x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """``(P, dims)`` coordinates in row-major order of ``loss[j, i]`` (y outer, x inner)."""
    if y is None:
        return x.reshape(-1, 1).astype(np.float64)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1).astype(np.float64)


# -- the result ----------------------------------------------------------------------------------
@dataclass
class LandscapeResult(Result):
    """A computed (or partly computed) landscape; see the module docstring for the file format.

    ``loss``/``accuracy`` hold NaN at points not evaluated yet (``complete`` is then False).
    """

    analysis: ClassVar[str] = "landscape"
    target: dict[str, Any]
    plane: dict[str, Any]
    x: np.ndarray
    y: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray
    origin_loss: float
    origin_accuracy: float
    settings: dict[str, Any] = field(default_factory=dict)
    trajectory: np.ndarray | None = None
    fingerprint: str = ""
    directions_file: str | None = None
    complete: bool = True
    path: str | None = None  # where it was saved or loaded from (not stored in the file)

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    def to_dict(self) -> dict[str, Any]:
        """What the JSON sidecar records; the arrays (``x``, ``y``, ``loss``, ``accuracy``, ``trajectory``)
        go to the ``.npz`` under their own names, so the file is the analyses' common format."""
        body = {
            "target": self.target, "plane": self.plane, "dims": self.dims, "settings": self.settings,
            "origin_loss": finite_number(self.origin_loss), "origin_accuracy": finite_number(self.origin_accuracy),
            "fingerprint": self.fingerprint, "directions_file": self.directions_file, "complete": self.complete,
            "x": np.asarray(self.x, np.float64),
            "y": np.asarray(self.y if self.y is not None else np.zeros(0), np.float64),
            "loss": np.asarray(self.loss, np.float64), "accuracy": np.asarray(self.accuracy, np.float64),
        }
        if self.trajectory is not None:
            body["trajectory"] = np.asarray(self.trajectory, np.float64)
        return {key: json_ready(value) if not isinstance(value, np.ndarray) else value for key, value in body.items()}

    def extra_arrays(self, document: Mapping[str, Any]) -> dict[str, np.ndarray]:
        # The .npz is self-describing: its "meta" string holds the sidecar's facts, for readers that
        # have only the .npz (NumPy alone).
        meta = {k: v for k, v in document.items() if not (isinstance(v, dict) and set(v) == {"__array__"})}
        return {"meta": np.array(json.dumps(meta))}

    def default_path(self, directory: str | Path) -> Path:
        return Path(directory) / default_file_name(self.plane.get("kind", "random"), self.dims).replace(".npz",
                                                                                                        ".json")

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write ``path`` (``.npz``) and its JSON sidecar atomically (:meth:`Result.save`); returns the ``.npz``."""
        path = Path(path)
        if path.suffix not in (".npz", ".json"):
            raise AnalysisError(f"a landscape is saved as .npz, got {path}")
        return super().save(path.with_suffix(".json"), force=force).with_suffix(".npz")

    @classmethod
    def load(cls, path: str | Path) -> "LandscapeResult":
        """Read the ``.npz`` (or its ``.json`` sidecar's ``.npz``); a partial grid loads too."""
        path = Path(path)
        if path.suffix == ".json":
            path = path.with_suffix(".npz")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except FileNotFoundError:
            raise AnalysisError(f"landscape file {path} does not exist; run `reslab analyze landscape` first") from None
        except (OSError, ValueError) as exc:
            raise AnalysisError(f"landscape file {path} is not a readable .npz ({exc}); delete it and rerun") from None
        if "meta" not in arrays or "loss" not in arrays:
            raise AnalysisError(f"{path} is not a landscape file (no 'meta'/'loss' arrays)")
        meta = json.loads(str(arrays["meta"]))
        y = arrays.get("y")
        return cls(
            target=meta.get("target") or {}, plane=meta.get("plane") or {}, x=arrays["x"],
            y=None if y is None or y.size == 0 else y, loss=arrays["loss"], accuracy=arrays["accuracy"],
            origin_loss=_nan_if_none(meta.get("origin_loss")),
            origin_accuracy=_nan_if_none(meta.get("origin_accuracy")),
            settings=meta.get("settings") or {}, trajectory=arrays.get("trajectory"),
            fingerprint=meta.get("fingerprint", ""), directions_file=meta.get("directions_file"),
            complete=bool(meta.get("complete", True)), path=str(path),
        )


# -- resumable grid evaluation -------------------------------------------------------------------
@dataclass
class GridProgress:
    """Values of a grid so far: ``loss``/``accuracy``/``done`` are flat ``(P,)`` arrays."""

    loss: np.ndarray
    accuracy: np.ndarray
    done: np.ndarray
    evaluated_now: int = 0
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return bool(self.done.all())


def evaluate_grid(evaluator: LandscapeEvaluator, plane: Plane, points: np.ndarray, *, fingerprint: str,
                  partial_path: str | Path | None = None, save_every_s: float = 30.0,
                  max_points: int | None = None, progress: bool = False, desc: str = "landscape",
                  on_chunk: Callable[[GridProgress], None] | None = None) -> GridProgress:
    """Evaluate ``plane`` at ``points`` (``(P, dims)``), resuming from and saving to ``partial_path``.

    Args:
        fingerprint: identifies the computation (plane, points, data); a partial file with
            another fingerprint is ignored and overwritten.
        partial_path: where the points done so far are saved (atomically, every ``save_every_s``
            seconds, on interruption, and at the end); ``None`` = not resumable.
        max_points: stop after evaluating this many new points (the rest is left for a rerun).
        progress: show a tqdm bar (points/s).
        on_chunk: called after every chunk (tests use it to interrupt).

    Returns a :class:`GridProgress`; call again with the same arguments to continue.
    """
    points = np.asarray(points, dtype=np.float64)
    total = points.shape[0]
    state = _load_partial(partial_path, fingerprint, total)
    if state is None:
        state = GridProgress(loss=np.full(total, np.nan), accuracy=np.full(total, np.nan),
                             done=np.zeros(total, dtype=bool))
    pending = np.flatnonzero(~state.done)
    if max_points is not None:
        pending = pending[:max(0, int(max_points))]
    chunk = evaluator.chunk_size if evaluator.method == "vmap" else 4 * evaluator.workers
    device_plane = plane.to(evaluator.device)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

        bar = tqdm(total=total, initial=int(state.done.sum()), desc=desc, unit="pt", dynamic_ncols=True)
    started = last_save = time.perf_counter()
    try:
        for start in range(0, len(pending), chunk):
            index = pending[start:start + chunk]
            loss, accuracy = evaluator.evaluate(device_plane, torch.from_numpy(points[index]))
            state.loss[index] = loss.numpy()
            state.accuracy[index] = accuracy.numpy()
            state.done[index] = True
            state.evaluated_now += len(index)
            if bar is not None:
                bar.update(len(index))
            if partial_path is not None and time.perf_counter() - last_save >= save_every_s:
                _save_partial(partial_path, fingerprint, state)
                last_save = time.perf_counter()
            if on_chunk is not None:
                on_chunk(state)
    finally:
        state.seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        if partial_path is not None and state.evaluated_now:
            _save_partial(partial_path, fingerprint, state)
    return state


def _save_partial(path: str | Path, fingerprint: str, state: GridProgress) -> None:
    _write_npz(Path(path), {"fingerprint": np.array(fingerprint), "loss": state.loss,
                            "accuracy": state.accuracy, "done": state.done})


def _load_partial(path: str | Path | None, fingerprint: str, total: int) -> GridProgress | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["fingerprint"]) != fingerprint or archive["done"].shape != (total,):
                return None
            return GridProgress(loss=archive["loss"].astype(np.float64),
                                accuracy=archive["accuracy"].astype(np.float64), done=archive["done"].astype(bool))
    except (OSError, ValueError, KeyError):
        return None  # a damaged partial file is recomputed, never trusted


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npz" to the temp name
            np.savez(handle, **arrays)


def computation_fingerprint(plane: Plane, points: np.ndarray, images: torch.Tensor, labels: torch.Tensor,
                            precision: str = "fp32") -> str:
    """Hash of everything the values depend on: the plane's tensors, the points, the samples, the precision."""
    digest = hashlib.sha256(b"landscape-v1")
    digest.update(precision.encode())
    digest.update(plane.fingerprint().encode())
    digest.update(np.ascontiguousarray(points, dtype=np.float64).tobytes())
    digest.update(images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update(labels.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EvaluationSettings(Settings):
    """How the points of a grid are evaluated (:func:`compute_landscape`): speed only, never the values
    beyond float rounding (``precision`` aside)."""

    batch_size: int | None = setting(None, "images per forward pass (default 512 on CPU, 2048 on a GPU)",
                                     minimum=1, cli=False)  # the shared target arguments add --batch-size
    device: str = setting("cpu", "where to compute", cli=False)
    method: Literal["auto", "loop", "vmap"] = setting(
        "auto", "loop: one point per pass, large channels-last batches; vmap: --chunk-size points per pass; "
                "auto = loop (faster on CPU, see docs/landscape.md)")
    chunk_size: int = setting(8, "points per pass with --method vmap", minimum=1)
    channels_last: bool | None = setting(None, "channels-last batches (default: on for the loop method)", cli=False)
    workers: int | None = setting(None, "CPU only: points evaluated at once, one thread each (default: torch's CPU "
                                        "threads)", minimum=1)
    fold_bn: bool = setting(True, "fold eval-mode BN into the convolutions", cli=False)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = setting(
        "fp32", "fp32, bf16/fp16 autocast (much faster on GPUs and CPUs with bf16 units; losses differ "
                "slightly), or auto: bf16 where the hardware has it, else fp32")
    max_points: int | None = setting(None, "evaluate at most N new points now, then stop (a rerun continues)",
                                     minimum=1)
    save_every_s: float = setting(30.0, "save the partial grid this often", minimum=0, flag="--save-every",
                                  metavar="SECONDS")
    progress: bool = setting(False, "a progress bar on stderr", cli=False)
    force: bool = setting(False, "replace a complete landscape of another computation in the output file",
                          cli=False)  # the shared --force


@dataclass(frozen=True)
class LandscapeSettings(EvaluationSettings):
    """Every option of :func:`analyze_landscape` and ``reslab analyze landscape``, with its one default."""

    plane: Literal["random", "pca", "interp"] = setting(
        "random", "random: filter-normalised Gaussian directions; pca: the trajectory's top PCA directions (needs "
                  "saved epoch checkpoints); interp: the line --from → --to")
    dims: Literal[1, 2] | None = setting(None, "1 (a line) or 2 (a plane); default 2, and 1 for interp")
    grid: str | None = setting(None, "grid along the first direction, e.g. --grid=-1:1:51 (a value starting with "
                                     "'-' needs the '='), or just N points over the default range (-1:1 random, "
                                     "-0.5:1.5 interp, the trajectory's extent + 20%% pca); default 51 points",
                               metavar="START:STOP:N")
    grid_y: str | None = setting(None, "grid along the second direction (default: as --grid)",
                                 metavar="START:STOP:N")
    samples: int | None = setting(2048, "images of the split to evaluate every point on", minimum=1, cli=False)
    split: Literal["train", "test"] = setting("train", "which split's images (train, as Li et al.)")
    seed: int = setting(0, "seed of the random directions (x: SEED, y: SEED+1)", minimum=0, cli=False)
    sample_seed: int = setting(0, "seed of the choice of --samples images (0: the same images whatever --seed)",
                               minimum=0)
    keep_bn_bias: bool = setting(False, "also perturb 1-D parameters (BN γ/β, biases), with direction = their own "
                                        "values as in Li et al.'s code, instead of keeping them fixed")
    interp_from: str = setting("init", "interp start: init, epoch_K, last, ema, a .safetensors file or another "
                                       "RUN_DIR", flag="--from", metavar="CHECKPOINT")
    interp_to: str | None = setting(None, "interp end (default: the --checkpoint analysed, normally last)",
                                    flag="--to", metavar="CHECKPOINT")
    directions: str | None = setting(None, "reuse the directions of an earlier landscape (its "
                                           ".directions.safetensors)", metavar="FILE")

    def check(self) -> None:
        parse_grid(self.grid, "--grid")
        if self.grid_y is not None:
            parse_grid(self.grid_y, "--grid-y")

    @property
    def evaluation(self) -> EvaluationSettings:
        return EvaluationSettings.from_dict({k: getattr(self, k) for k in EvaluationSettings.field_names()})


def compute_landscape(model: torch.nn.Module, plane: Plane, images: torch.Tensor, labels: torch.Tensor, *,
                      x: np.ndarray, y: np.ndarray | None = None, out: str | Path | None = None,
                      target: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None,
                      evaluation: EvaluationSettings | Mapping[str, Any] | None = None,
                      on_chunk: Callable[[GridProgress], None] | None = None, **changes: Any) -> LandscapeResult:
    """Evaluate ``plane`` on the grid ``x`` (× ``y``) and the origin; save to ``out`` if given.

    Args:
        model: the architecture (weights come from the plane).
        images, labels: normalised float32 ``(N, C, H, W)`` and int64 ``(N,)``.
        x, y: grid coordinates; ``y`` is None for a 1-D plane.
        out: the ``.npz`` to write; ``<stem>.partial.npz`` beside it makes the work resumable and
            ``<stem>.directions.safetensors`` keeps the axes.
        target, settings: what the result records of the target and of the settings that chose
            the samples and the grid.
        evaluation: an :class:`EvaluationSettings` (or mapping); ``changes`` — any of its fields as
            keywords (``batch_size=16``, ``precision="bf16"``, ``max_points=6``) — on top.
        on_chunk: called after every evaluated chunk of points (with the grid's progress).

    Returns the :class:`LandscapeResult` (also written to ``out`` when given, complete or not).
    """
    evaluation = EvaluationSettings.of(evaluation, **changes)
    label = (target or {}).get("label", "")
    desc = f"landscape {label}".strip()
    if (y is None) != (plane.dims == 1):
        needs = "x and y" if plane.dims == 2 else "only x"
        raise AnalysisError(f"a {plane.dims}-D plane needs {needs} grid coordinates")
    x = np.asarray(x, dtype=np.float64)
    y = None if y is None else np.asarray(y, dtype=np.float64)
    grid = grid_points(x, y)
    points = np.concatenate([grid, np.zeros((1, plane.dims))])  # the origin last: its loss is reported alone
    precision, precision_note = resolve_precision(evaluation.precision, evaluation.device)
    fingerprint = computation_fingerprint(plane, points, images, labels, precision)
    out = Path(out) if out is not None else None
    if out is not None and not evaluation.force:
        _check_not_another_landscape(out, fingerprint)
    partial = out.with_suffix(".partial.npz") if out is not None else None
    e = evaluation
    evaluator = LandscapeEvaluator(model, images, labels, batch_size=e.batch_size, device=e.device, method=e.method,
                                   chunk_size=e.chunk_size, channels_last=e.channels_last, workers=e.workers,
                                   fold_bn=e.fold_bn, precision=precision)
    state = evaluate_grid(evaluator, plane, points, fingerprint=fingerprint, partial_path=partial,
                          save_every_s=e.save_every_s, max_points=e.max_points, progress=e.progress, desc=desc,
                          on_chunk=on_chunk)
    shape = (x.size,) if y is None else (y.size, x.size)
    run_settings = {
        "samples": int(images.shape[0]), "batch_size": evaluator.batch_size, "method": evaluator.method,
        "chunk_size": evaluator.chunk_size, "device": str(evaluator.device), "channels_last": evaluator.channels_last,
        "workers": evaluator.workers, "bn_folded": evaluator.bn_folded,
        "pointwise_fused": evaluator.pointwise_fused, "precision": evaluator.precision,
        "precision_choice": precision_note or None, "bn_mode": "eval", "loss": "cross_entropy", "points": int(points.shape[0]),
        "points_evaluated_now": int(state.evaluated_now), "seconds_now": round(state.seconds, 3),
        "points_per_s": (round(state.evaluated_now / state.seconds, 3)
                         if state.seconds > 0 and state.evaluated_now else None),
        **dict(settings or {}),
    }
    plane_info = {"kind": plane.kind, "dims": plane.dims, **plane.info}
    result = LandscapeResult(
        target=dict(target or {}), plane=json_ready(plane_info), x=x, y=y,
        loss=state.loss[:-1].reshape(shape), accuracy=state.accuracy[:-1].reshape(shape),
        origin_loss=float(state.loss[-1]), origin_accuracy=float(state.accuracy[-1]),
        settings=json_ready(run_settings),
        trajectory=None if plane.trajectory is None else plane.trajectory.cpu().numpy(),
        fingerprint=fingerprint, complete=state.complete,
    )
    if out is not None:
        directions = out.with_name(out.stem + ".directions.safetensors")
        if not directions.exists() or _directions_origin(directions) != state_hash(plane.origin):
            save_plane(directions, plane)
        result.directions_file = directions.name
        result.save(out, force=True)  # checked above, before computing
        result.path = str(out)
        if state.complete and partial is not None and partial.exists():
            partial.unlink()
    return result


def _check_not_another_landscape(out: Path, fingerprint: str) -> None:
    """AnalysisError if ``out`` holds a complete landscape of other weights, plane, grid or samples.

    Checked before computing, so no work is done that could not be saved; a partial grid of the
    same computation is continued instead.
    """
    sidecar = out.with_suffix(".json")
    if not sidecar.is_file():
        return
    try:
        old = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(old, dict) and old.get("complete") and old.get("fingerprint") not in (None, fingerprint):
        grid = "×".join(str(len(old.get(k) or [])) for k in ("x", "y") if old.get(k))
        raise AnalysisError(
            f"{out} holds a complete landscape of another computation (other weights, plane, grid or samples"
            + (f"; {old.get('settings', {}).get('points', '?')} points" if not grid else "") + "); pass --force "
            "(force=True) to replace it and its plots, or --out FILE.npz to keep both")


def _directions_origin(path: Path) -> str | None:
    try:

        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("origin_sha256")
    except Exception:  # noqa: BLE001 - any unreadable file is simply rewritten
        return None


# -- planes of a target --------------------------------------------------------------------------
def checkpoint_state(target, spec: str) -> tuple[dict[str, torch.Tensor], str]:
    """The float state named ``spec`` for ``target``'s architecture, and a label for it.

    spec: ``"current"`` (the target's own weights), a checkpoint of the target's run (``init``,
    ``last``, ``ema``, ``epoch_K``), a ``.safetensors`` file, or another RUN_DIR (its ``last``).
    """

    if spec in ("current", getattr(target, "checkpoint", None)) or (spec == "init" and target.run_dir is None):
        return model_state(target.model), str(spec if spec != "current" else target.checkpoint)

    path_spec = Path(spec)
    if is_run_dir(path_spec):
        path = checkpoint_path(path_spec, "last")
        label = f"{path_spec.name}:last"
    elif target.run_dir is None:
        if not path_spec.is_file():
            raise AnalysisError(f"checkpoint {spec!r}: a fresh model has no run to take named checkpoints from; "
                                "give a .safetensors file or a RUN_DIR")
        path, label = path_spec, path_spec.stem
    else:
        path = checkpoint_path(target.run_dir, spec)
        label = str(spec)
    weights, _ = load_weights(path)
    reference = model_state(target.model)
    state = {k: v.to(torch.float32) for k, v in weights.items() if v.is_floating_point()}
    check_compatible(reference, state, f"checkpoint {spec!r} ({path})")
    return state, label


def trajectory_states(target, final_label: str) -> tuple[list[dict[str, torch.Tensor]], list[str]]:
    """The run's saved trajectory before ``final_label``: ``init`` (if saved) then every ``epoch_K``."""
    if target.run_dir is None:
        raise AnalysisError("--plane pca needs a RUN_DIR with saved epoch checkpoints (the training trajectory); "
                            "a fresh model has none")

    labels = []
    if (Path(target.run_dir) / "checkpoints" / "init.safetensors").is_file():
        labels.append("init")
    labels += [f"epoch_{k}" for k in list_checkpoints(target.run_dir)]
    final_match = re.fullmatch(r"epoch_0*(\d+)", final_label)
    if final_match:  # a PCA around an intermediate epoch uses the path up to it
        stop = int(final_match[1])
        labels = [lab for lab in labels if lab == "init" or int(lab.split("_")[1]) < stop]
    if len(labels) < 2:
        raise AnalysisError(
            f"run {target.run_dir} has {len(labels)} saved checkpoint(s) before {final_label!r}; a PCA plane needs at "
            "least 2 (train with --set save_every=1 to save every epoch), or use --plane random")
    states = [checkpoint_state(target, label)[0] for label in labels]
    return states, labels


def make_plane(target, kind: str = "random", dims: int | None = None, seed: int = 0, keep_bn_bias: bool = False,
               interp_from: str = "init", interp_to: str | None = None, directions: str | Path | None = None,
               normalization: str = "filter") -> Plane:
    """The plane (or line) of ``kind`` around ``target``'s weights (see ``reslab analyze landscape``)."""

    if kind not in PLANE_KINDS:
        raise ConfigError(f"--plane must be one of {', '.join(PLANE_KINDS)}, got {kind!r}")
    dims = dims if dims is not None else (1 if kind == "interp" else 2)
    if dims not in (1, 2):
        raise ConfigError(f"--dims must be 1 or 2, got {dims}")
    if kind == "interp":
        if dims != 1:
            raise ConfigError("--plane interp is a line between two checkpoints: use --dims 1")
        start, start_label = checkpoint_state(target, interp_from)
        end, end_label = checkpoint_state(target, interp_to or "current")
        return interpolation_line(start, end, start_label, end_label)
    if kind == "pca":
        final = model_state(target.model)
        states, labels = trajectory_states(target, str(target.checkpoint))
        return pca_plane(states, final, parameter_names(target.model), labels=labels, dims=dims,
                         keep_bn_bias=keep_bn_bias, final_label=str(target.checkpoint))
    if directions is not None:
        origin = model_state(target.model)
        axes, meta = load_plane_axes(directions, origin)
        if len(axes) < dims:
            raise AnalysisError(f"--directions {directions}: holds {len(axes)} direction(s), "
                                f"--dims {dims} needs {dims}")
        info = {**meta.get("info", {}), "directions_from": str(directions)}
        return Plane(meta.get("kind", "random"), origin, axes[:dims], info)
    return random_plane(target.model, dims=dims, seed=seed, keep_bn_bias=keep_bn_bias, normalization=normalization)


def default_file_name(kind: str, dims: int, split: str = "train", interp_from: str | None = None,
                      interp_to: str | None = None) -> str:
    """``landscape_random_2d.npz``, ``landscape_pca.npz``, ``landscape_interp_init-last.npz`` (+ ``_test``)."""
    if kind == "interp":
        def clean(s: str) -> str:
            return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(s).stem if s.endswith(".safetensors") else Path(s).name or s)
        stem = f"landscape_interp_{clean(interp_from or 'init')}-{clean(interp_to or 'last')}"
    elif kind == "pca":
        stem = "landscape_pca" if dims == 2 else "landscape_pca_1d"
    else:
        stem = f"landscape_{kind}_{dims}d"
    return stem + ("" if split == "train" else f"_{split}") + ".npz"


def analyze_landscape(target, settings: LandscapeSettings | Mapping[str, Any] | None = None, *,
                      out: str | Path | None = None, images: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None, **changes: Any) -> LandscapeResult:
    """The Python twin of ``reslab analyze landscape``: plane + grid + samples → saved landscape.

    Args:
        target: a :class:`reslab.analysis.common.Target` (``load_target(RUN_DIR or model name)``).
        settings: a :class:`LandscapeSettings` (or mapping); ``changes`` — any of its fields as
            keywords (``plane="pca"``, ``grid="-1:1:21"``, ``samples=512``, ``workers=2``) — on top.
            See the class for every option and its default.
        out: the ``.npz`` file, or a directory (then :func:`default_file_name` in it); default
            ``RUN_DIR/analysis`` or ``analysis/MODEL``.
        images, labels: use these normalised samples instead of choosing from the target's dataset.
    """
    s = LandscapeSettings.of(settings, **changes)
    spec_x = parse_grid(s.grid, "--grid")
    spec_y = parse_grid(s.grid_y, "--grid-y") if s.grid_y is not None else spec_x
    the_plane = make_plane(target, s.plane, s.dims, seed=s.seed, keep_bn_bias=s.keep_bn_bias,
                           interp_from=s.interp_from, interp_to=s.interp_to, directions=s.directions)
    if s.plane == "pca":
        trajectory = the_plane.trajectory.numpy()
        x = grid_axis(spec_x, pca_default_range(trajectory, 0))
        y = grid_axis(spec_y, pca_default_range(trajectory, 1)) if the_plane.dims == 2 else None
    else:
        x = grid_axis(spec_x, DEFAULT_RANGES[s.plane if s.plane in DEFAULT_RANGES else "random"])
        y = grid_axis(spec_y, DEFAULT_RANGES["random"]) if the_plane.dims == 2 else None
    if images is None or labels is None:
        images, labels = target_samples(target, s.split, s.samples, s.sample_seed)
    out = Path(out) if out is not None else default_out_dir(target)
    if out.suffix != ".npz":
        out = out / default_file_name(s.plane, the_plane.dims, s.split, s.interp_from,
                                      s.interp_to or str(target.checkpoint))
    recorded = {"split": s.split, "sample_seed": s.sample_seed, "requested_samples": s.samples,
                "dataset": getattr(target.dataset, "name", None)}
    describe = target.describe() if hasattr(target, "describe") else {}
    return compute_landscape(target.model, the_plane, images, labels, x=x, y=y, out=out, target=describe,
                             settings=recorded, evaluation=s.evaluation)


def target_samples(target, split: str, samples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of ``target``'s split, normalised as its model was trained."""
    if hasattr(target, "samples"):
        return target.samples(split, samples, seed=seed)

    return select_samples(target.dataset, split, samples, seed=seed)




def _nan_if_none(value) -> float:
    return float("nan") if value is None else float(value)
