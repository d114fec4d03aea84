"""``reslab analyze landscape``: loss surfaces on filter-normalised, PCA or interpolation planes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from reslab.analysis.common import device_of, progress_enabled, resolve_twin
from reslab.analysis.landscape import analyze_landscape
from reslab.analysis.landscape.surface import LandscapeSettings
from reslab.cli._analysis import (
    TARGET_OR_CHECKPOINT,
    add_target_arguments,
    load_main_target,
    parse_key_values,
    print_written,
)
from reslab.errors import CheckpointError, ConfigError
from reslab.settings import add_arguments, given

PLANE_OPTIONS = ("plane", "dims", "grid", "grid_y", "split", "keep_bn_bias", "interp_from", "interp_to",
                 "directions")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "landscape", help="loss surface around a checkpoint (Li et al. 2018): random, PCA or interpolation plane",
        description="Loss and accuracy over a grid of weights around a trained run's checkpoint (or a fresh model): "
                    "a plane of two filter-normalised random directions (--plane random), the plane of the "
                    "training trajectory's top-2 PCA directions with the trajectory drawn on it (--plane pca), or "
                    "the line between two checkpoints (--plane interp). BN runs in eval mode. Writes one .npz "
                    "(+ .json sidecar, + the directions as .safetensors) and PNG plots; a rerun with the same "
                    "arguments resumes an interrupted grid.",
    )
    add_target_arguments(
        parser, samples_default=LandscapeSettings.default("samples"),
        samples_help="images of the split to evaluate every point on", batch_size_default=None,
        helps={"target": TARGET_OR_CHECKPOINT,
               "batch_size": "images per forward pass (default 512 on CPU, 2048 on a GPU)",
               "seed": "seed of the random directions (x: SEED, y: SEED+1) and of fresh models (default 0)",
               "out": ("output directory, or the .npz file to write (default: RUN_DIR/analysis, or analysis/MODEL "
                       "for a model name)", "DIR|FILE.npz")})
    add_arguments(parser, LandscapeSettings, include=["sample_seed"])
    add_arguments(parser.add_argument_group("plane"), LandscapeSettings, include=PLANE_OPTIONS)
    speed = parser.add_argument_group("evaluation")
    add_arguments(speed, LandscapeSettings, exclude=("sample_seed", *PLANE_OPTIONS))
    speed.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default: torch's choice; on a busy shared machine fewer threads "
                            "can be much faster)")
    speed.add_argument("--no-plots", action="store_true", help="write the .npz only")
    parser.set_defaults(func=run)


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:

        raise ConfigError(f"--threads must be at least 1, got {threads}")

    torch.set_num_threads(threads)


def resolve_target(args, checkpoint: str | None = None):
    """The TARGET of ``args``: a checkpoint file inside a run stands for that run at that checkpoint."""
    path = Path(args.target)
    if path.is_file() and path.suffix == ".safetensors":

        if path.parent.name != "checkpoints" or not (path.parent.parent / "config.json").is_file():
            raise CheckpointError(f"{path} is not inside a run's checkpoints/ folder, so its model settings are "
                                  f"unknown; give the model name and the file (MODEL --checkpoint {path} --data ...), "
                                  "or the run directory (and --checkpoint)")
        # A standard name (last, init, ema, epoch_0003) reads better in labels and file names than a path.
        standard = path.stem in ("last", "init", "ema") or re.fullmatch(r"epoch_\d+", path.stem)
        args.target, args.checkpoint = str(path.parent.parent), path.stem if standard else str(path)
    return load_main_target(args, checkpoint)


def targets_of(args) -> list:
    target = resolve_target(args)
    twin = resolve_twin(target, args.twin)
    return [target] + ([twin] if twin is not None else [])


def output_for(args, target, several: bool) -> Path | None:
    if not args.out:
        return None
    out = Path(args.out)
    if several:
        base = out.parent / out.stem if out.suffix == ".npz" else out
        return base / target.label.replace("/", "_") if out.suffix != ".npz" else base / f"{target.label}.npz"
    return out


def run(args) -> int:
    from reslab.report.landscape_plots import save_landscape_plots  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    parse_key_values(args.data_option, "--data-option")  # fail early on a malformed option
    set_threads(args.threads)
    settings = LandscapeSettings.of(given(args, LandscapeSettings), samples=args.samples, seed=args.seed,
                                    batch_size=args.batch_size, device=str(device_of(args.device)),
                                    progress=progress_enabled(args.quiet), force=args.force)
    targets = targets_of(args)
    written = []
    for target in targets:
        result = analyze_landscape(target, settings, out=output_for(args, target, len(targets) > 1))
        finite = result.loss[~(result.loss != result.loss)]
        recorded = result.settings
        rate = recorded.get("points_per_s")
        # The origin (the checkpoint itself) is evaluated besides the grid; it lies on the grid for
        # random and interpolation planes, and off it (between grid points) for a PCA plane.
        print(f"{target.label}: {result.plane.get('kind')} {result.dims}-D, {result.loss.size} grid points + the "
              f"origin on {recorded.get('samples')} {recorded.get('split')} images; origin loss "
              f"{result.origin_loss:.4g}, accuracy {100 * result.origin_accuracy:.2f}%; grid loss range "
              f"{finite.min():.4g}..{finite.max():.4g}" if finite.size else f"{target.label}: no points evaluated yet")
        if recorded.get("precision_choice"):
            print(f"  precision {recorded['precision_choice']}")
        if rate:
            print(f"  {recorded.get('points_evaluated_now')} points (grid + origin) in {recorded.get('seconds_now')} s "
                  f"({rate:.2f} points/s; method {recorded.get('method')}, batch {recorded.get('batch_size')}, "
                  f"{recorded.get('workers')} worker(s), {recorded.get('bn_folded')} BN folded, "
                  f"{recorded.get('pointwise_fused')} conv+ReLU fused)")
        if not result.complete:
            missing = int(sum(1 for v in result.loss.ravel() if math.isnan(v)))
            print(f"  incomplete: {missing} points left; rerun the same command to continue")
        npz = Path(result.path)
        written.append(npz)
        if result.complete and not args.no_plots:
            written.extend(save_landscape_plots(npz))
    print_written(written)
    return 0
