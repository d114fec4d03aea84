"""``reslab analyze landscape``: loss surfaces on filter-normalised, PCA or interpolation planes."""

from __future__ import annotations

import re
from pathlib import Path

from reslab.cli._analysis import TARGET_OR_CHECKPOINT, add_target_arguments, load_main_target, parse_key_values, print_written


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
        parser, samples_default=2048, samples_help="images of the split to evaluate every point on",
        batch_size_default=None,
        helps={"target": TARGET_OR_CHECKPOINT,
               "batch_size": "images per forward pass (default 512 on CPU, 2048 on a GPU)",
               "seed": "seed of the random directions (x: SEED, y: SEED+1) and of fresh models (default 0)",
               "out": ("output directory, or the .npz file to write (default: RUN_DIR/analysis, or analysis/MODEL "
                       "for a model name)", "DIR|FILE.npz")})
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="seed of the choice of --samples images (default 0: the same images whatever --seed)")
    plane = parser.add_argument_group("plane")
    plane.add_argument("--plane", choices=["random", "pca", "interp"], default="random",
                       help="random: filter-normalised Gaussian directions (default); pca: the trajectory's top PCA "
                            "directions (needs saved epoch checkpoints); interp: the line --from → --to")
    plane.add_argument("--dims", type=int, choices=[1, 2], default=None,
                       help="1 (a line) or 2 (a plane); default 2, and 1 for interp")
    plane.add_argument("--grid", default=None, metavar="START:STOP:N",
                       help="grid along the first direction, e.g. --grid=-1:1:51 (a value starting with '-' "
                            "needs the '='), or just N points over the default range "
                            "(-1:1 random, -0.5:1.5 interp, the trajectory's extent + 20%% pca); default 51 points")
    plane.add_argument("--grid-y", default=None, metavar="START:STOP:N", help="grid along the second direction "
                                                                             "(default: as --grid)")
    plane.add_argument("--split", choices=["train", "test"], default="train",
                       help="which split's images (default train, as Li et al.)")
    plane.add_argument("--keep-bn-bias", action="store_true",
                       help="also perturb 1-D parameters (BN γ/β, biases), with direction = their own values as in "
                            "Li et al.'s code; default: they stay fixed")
    plane.add_argument("--from", dest="interp_from", default="init", metavar="CHECKPOINT",
                       help="interp start: init (default), epoch_K, last, ema, a .safetensors file or another RUN_DIR")
    plane.add_argument("--to", dest="interp_to", default=None, metavar="CHECKPOINT",
                       help="interp end (default: the --checkpoint analysed, normally last)")
    plane.add_argument("--directions", default=None, metavar="FILE",
                       help="reuse the directions of an earlier landscape (its .directions.safetensors)")
    speed = parser.add_argument_group("evaluation")
    speed.add_argument("--method", choices=["auto", "loop", "vmap"], default="auto",
                       help="loop: one point per pass, large channels-last batches; vmap: --chunk-size points per "
                            "pass; auto = loop (faster on CPU, see docs/landscape.md)")
    speed.add_argument("--chunk-size", type=int, default=8, help="points per pass with --method vmap (default 8)")
    speed.add_argument("--workers", type=int, default=None, metavar="N",
                       help="CPU only: points evaluated at once, one thread each (default: torch's CPU threads)")
    speed.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                       help="fp32 (default); bf16/fp16 autocast is much faster on GPUs, losses differ slightly")
    speed.add_argument("--max-points", type=int, default=None, metavar="N",
                       help="evaluate at most N new points now, then stop (a rerun continues)")
    speed.add_argument("--save-every", type=float, default=30.0, metavar="SECONDS",
                       help="save the partial grid this often (default 30)")
    speed.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default: torch's choice; on a busy shared machine fewer threads "
                            "can be much faster)")
    speed.add_argument("--no-plots", action="store_true", help="write the .npz only")
    parser.set_defaults(func=run)


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        from reslab.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def resolve_target(args, checkpoint: str | None = None):
    """The TARGET of ``args``: a checkpoint file inside a run stands for that run at that checkpoint."""
    path = Path(args.target)
    if path.is_file() and path.suffix == ".safetensors":
        from reslab.errors import CheckpointError

        if path.parent.name != "checkpoints" or not (path.parent.parent / "config.json").is_file():
            raise CheckpointError(f"{path} is not inside a run's checkpoints/ folder, so its model settings are "
                                  "unknown; give the run directory (and --checkpoint)")
        # A standard name (last, init, ema, epoch_0003) reads better in labels and file names than a path.
        standard = path.stem in ("last", "init", "ema") or re.fullmatch(r"epoch_\d+", path.stem)
        args.target, args.checkpoint = str(path.parent.parent), path.stem if standard else str(path)
    return load_main_target(args, checkpoint)


def targets_of(args) -> list:
    from reslab.analysis.common import resolve_twin

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
    import math

    from reslab.analysis.common import device_of, progress_enabled
    from reslab.analysis.landscape import analyze_landscape
    from reslab.report.landscape_plots import save_landscape_plots

    parse_key_values(args.data_option, "--data-option")  # fail early on a malformed option
    set_threads(args.threads)
    targets = targets_of(args)
    device = device_of(args.device)
    written = []
    for target in targets:
        result = analyze_landscape(
            target, plane=args.plane, dims=args.dims, grid=args.grid, grid_y=args.grid_y, samples=args.samples,
            split=args.split, seed=args.seed, sample_seed=args.sample_seed, keep_bn_bias=args.keep_bn_bias,
            interp_from=args.interp_from,
            interp_to=args.interp_to, directions=args.directions, out=output_for(args, target, len(targets) > 1),
            batch_size=args.batch_size, device=device, method=args.method, chunk_size=args.chunk_size,
            workers=args.workers, precision=args.precision, max_points=args.max_points,
            save_every_s=args.save_every, progress=progress_enabled(args.quiet),
        )
        finite = result.loss[~(result.loss != result.loss)]
        settings = result.settings
        rate = settings.get("points_per_s")
        print(f"{target.label}: {result.plane.get('kind')} {result.dims}-D, {result.loss.size} points on "
              f"{settings.get('samples')} {settings.get('split')} images; origin loss {result.origin_loss:.4g}, "
              f"accuracy {100 * result.origin_accuracy:.2f}%; loss range {finite.min():.4g}..{finite.max():.4g}"
              if finite.size else f"{target.label}: no points evaluated yet")
        if rate:
            print(f"  {settings.get('points_evaluated_now')} points in {settings.get('seconds_now')} s "
                  f"({rate:.2f} points/s; method {settings.get('method')}, batch {settings.get('batch_size')}, "
                  f"{settings.get('workers')} worker(s), {settings.get('bn_folded')} BN folded, "
                  f"{settings.get('pointwise_fused')} conv+ReLU fused)")
        if not result.complete:
            missing = int(sum(1 for v in result.loss.ravel() if math.isnan(v)))
            print(f"  incomplete: {missing} points left; rerun the same command to continue")
        npz = Path(result.path)
        written.append(npz)
        if result.complete and not args.no_plots:
            written.extend(save_landscape_plots(npz))
    print_written(written)
    return 0
