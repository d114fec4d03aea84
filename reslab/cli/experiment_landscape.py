"""``reslab experiment landscape``: residual vs plain loss surfaces and curvature (Li et al. 2018)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from reslab.experiments.landscape import BUDGETS, DEFAULT_MODELS, PLANES

    digits, other = BUDGETS["digits"], BUDGETS["default"]
    parser = subparsers.add_parser(
        "landscape", help="train (or reuse) residual and plain twins; compare their loss surfaces and curvature",
        description="Train the models with the same recipe and seed (saving every epoch), or reuse finished runs "
                    "(--reuse), one run directory each under --out; then, with the same directions and samples "
                    "for all models, compute the random filter-normalised 2-D loss surface, optionally the PCA "
                    "plane of the training trajectory and the init → last line, and the Hessian summary (λmax, "
                    "λmin, |λmin/λmax|, trace). Writes landscape.json and side-by-side PNGs on one colour scale; "
                    "`reslab report OUT` shows them. Resumable: the same command again skips finished runs and "
                    "grids and continues partial ones.",
        epilog=f"Default budgets — digits: grid {digits['grid']}, {digits['samples']} images, Hessian on "
               f"{digits['hessian_samples']} images with {digits['trace_probes']} trace probes (a few minutes on "
               f"2 CPU cores); other data: grid {other['grid']}, {other['samples']} images, Hessian on "
               f"{other['hessian_samples']} with {other['trace_probes']} probes. The paper's setting on a GPU: "
               "--grid -1:1:51 --samples 10000.",
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="MODEL",
                        help="models to compare (default: resnet56 plain56)")
    parser.add_argument("--data", default="digits",
                        help="dataset: digits (default, embedded), cifar10, cifar100, synthetic, imagefolder")
    parser.add_argument("--data-dir", help="where the dataset's files are (CIFAR: the folder holding "
                                           "cifar-10-batches-py)")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing (CIFAR only)")
    training = parser.add_argument_group("training")
    training.add_argument("--recipe", help="training recipe name or .toml path (default: digits-degradation for the "
                                           "digits, cifar10-fast otherwise)")
    training.add_argument("--epochs", type=int, help="epochs per run (replaces the recipe's length)")
    training.add_argument("--seed", type=int, default=0, help="training seed of every run (default 0)")
    training.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                          help="any training setting, the same for every run (e.g. --set lr=0.1); repeatable")
    training.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (default 1)")
    training.add_argument("--reuse", nargs="+", default=[], metavar="EXP_OR_RUN_DIR",
                          help="take finished runs of the same model, seed and data from these run or experiment "
                               "directories instead of training (hard-linked into --out; never retrained)")
    landscape = parser.add_argument_group("landscape")
    landscape.add_argument("--grid", default=None, metavar="START:STOP:N",
                           help="grid of the random plane along both directions, or N points over -1..1 (default "
                                f"{digits['grid']} for the digits, {other['grid']} otherwise); the PCA plane gets "
                                "N×N points over the trajectory, the interpolation 2N−1 over −0.5…1.5")
    landscape.add_argument("--samples", type=int, default=None,
                           help=f"images every point is evaluated on (default {digits['samples']} digits, "
                                f"{other['samples']} otherwise)")
    landscape.add_argument("--split", choices=["train", "test"], default="train", help="which split (default train)")
    landscape.add_argument("--direction-seed", type=int, default=0,
                           help="seed of the random directions, the same for every model (default 0)")
    landscape.add_argument("--planes", nargs="+", choices=list(PLANES), default=list(PLANES),
                           help="planes to compute (default: all; pca needs epoch checkpoints and is skipped with a "
                                "note for runs without them)")
    landscape.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                           help="fp32 (default); bf16/fp16 autocast is much faster on GPUs, losses differ slightly")
    landscape.add_argument("--workers", type=int, default=None,
                           help="CPU: landscape points evaluated at once, one thread each (default: the cores)")
    curvature = parser.add_argument_group("curvature")
    curvature.add_argument("--hessian", action=argparse.BooleanOptionalAction, default=True,
                           help="compute λmax, λmin, |λmin/λmax| and the trace (default: yes)")
    curvature.add_argument("--hessian-samples", type=int, default=None,
                           help=f"images the Hessian's loss averages over (default {digits['hessian_samples']})")
    curvature.add_argument("--top-k", type=int, default=None, help="top eigenvalues by power iteration (default 1)")
    curvature.add_argument("--hessian-iterations", type=int, default=None,
                           help=f"power iterations per eigenvalue at most (default {digits['max_iterations']})")
    curvature.add_argument("--extreme-steps", type=int, default=None,
                           help=f"Lanczos steps for λmin (default {digits['extreme_steps']})")
    curvature.add_argument("--trace-probes", type=int, default=None,
                           help=f"Hutchinson probes for the trace; 0 = no trace (default {digits['trace_probes']} "
                                f"digits, {other['trace_probes']} otherwise)")
    parser.add_argument("--device", default="auto",
                        help="where to train and analyse: auto (default: CUDA when available), cpu, cuda, cuda:1")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads for the analyses and the training (default: torch's choice; on a "
                             "busy shared machine 1 is often much faster)")
    parser.add_argument("--out", help="experiment directory (default runs/landscape-DATA)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    from reslab.cli.analyze_landscape import allow_negative_ranges

    allow_negative_ranges(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.experiments.landscape import run_landscape_experiment
    from reslab.train import parse_overrides

    try:
        result = run_landscape_experiment(
            args.models, args.data, data_dir=args.data_dir, download=args.download, recipe=args.recipe,
            seed=args.seed, epochs=args.epochs, overrides=parse_overrides(args.settings), grid=args.grid,
            samples=args.samples, split=args.split, direction_seed=args.direction_seed, planes=args.planes,
            hessian=args.hessian, hessian_samples=args.hessian_samples, top_k=args.top_k,
            hessian_iterations=args.hessian_iterations, extreme_steps=args.extreme_steps,
            trace_probes=args.trace_probes, reuse=args.reuse, out=args.out, jobs=args.jobs, device=args.device,
            precision=args.precision, threads=args.threads, workers=args.workers, quiet=args.quiet,
        )
    except KeyboardInterrupt:
        # Training saved its checkpoints and a grid its partial file: the same command continues.
        print("reslab experiment landscape: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if not result.complete:
        print("reslab experiment landscape: stopped before everything finished; run the same command again to "
              "resume", file=sys.stderr)
        return 130
    print(result.table())
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    print(f"report: reslab report {result.experiment_dir} -o {result.experiment_dir / 'report.html'}")
    return 0
