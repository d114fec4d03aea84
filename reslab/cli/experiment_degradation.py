"""``reslab experiment degradation``: plain vs residual twins at several depths (He et al. 2015, Fig. 6)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "degradation", help="train residual and plain twins at several depths; error vs iterations and depth",
        description="Train the residual network and its plain twin (no shortcuts) at every depth with the same "
                    "recipe and seeds, one run directory each under --out; then write degradation.json/.csv and "
                    "the plots (He et al. 2015, Fig. 6; error against depth). Resumable: the same command again "
                    "skips finished runs and resumes interrupted ones.",
    )
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110], metavar="D",
                        help="weight layers, each 6n+2 (default 20 56 110)")
    parser.add_argument("--data", default="digits",
                        help="dataset: digits (default, embedded), cifar10, cifar100, synthetic, imagefolder")
    parser.add_argument("--data-dir", help="where the dataset's files are (CIFAR: the folder holding "
                                           "cifar-10-batches-py)")
    parser.add_argument("--download", action="store_true", help="download the dataset if missing (CIFAR only)")
    parser.add_argument("--recipe", help="training recipe name or .toml path (default: digits-degradation for the "
                                         "digits, cifar10-fast otherwise); see reslab train --list-recipes")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="K", help="train every network with seeds 0..K-1 (default: seed 0)")
    seeds.add_argument("--seed", type=int, metavar="S", help="train every network with this one seed")
    parser.add_argument("--epochs", type=int, help="epochs per run (replaces the recipe's length)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting, the same for every run (e.g. --set lr=0.1 --set threads=1 "
                             "--set batch_size=64); repeatable")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at the same time, each in its own process with cores/jobs threads "
                             "(default 1)")
    parser.add_argument("--out", help="experiment directory (default runs/degradation-DATA)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary table")
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.experiments.degradation import run_degradation
    from reslab.train import parse_overrides

    try:
        result = run_degradation(
            args.depths, args.data, data_dir=args.data_dir, download=args.download, recipe=args.recipe,
            seeds=args.seeds, seed=args.seed, epochs=args.epochs, overrides=parse_overrides(args.settings),
            out=args.out, jobs=args.jobs, quiet=args.quiet,
        )
    except KeyboardInterrupt:
        # The runs in flight saved their checkpoints (the trainer stops cleanly on SIGINT).
        print("reslab experiment degradation: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if not result.complete:
        print("reslab experiment degradation: stopped before every run finished; run the same command again to "
              "resume", file=sys.stderr)
        return 130
    print(result.table())
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0
