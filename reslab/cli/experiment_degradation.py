"""``reslab experiment degradation``: plain vs residual twins at several depths (He et al. 2015, Fig. 6)."""

from __future__ import annotations

from reslab.cli.experiment import finish
from reslab.experiments.degradation import DegradationSettings, run_degradation
from reslab.cli._launch import add_launch_arguments, settings_given
from reslab.settings import add_arguments
from reslab.train import parse_overrides


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "degradation", help="train residual and plain twins at several depths; error vs iterations and depth",
        description="Train the residual network and its plain twin (no shortcuts) at every depth with the same "
                    "recipe and seeds, one run directory each under --out; then write degradation.json/.csv and "
                    "the plots (He et al. 2015, Fig. 6; error against depth). Resumable: the same command again "
                    "skips finished runs and resumes interrupted ones.",
    )
    add_arguments(parser, DegradationSettings, include=["depths", "data", "data_dir", "download", "recipe"])
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, metavar="K", help="train every network with seeds 0..K-1 (default: seed 0)")
    seeds.add_argument("--seed", type=int, metavar="S", help="train every network with this one seed")
    add_arguments(parser, DegradationSettings, include=["epochs"])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting, the same for every run (e.g. --set lr=0.1 --set threads=1 "
                             "--set batch_size=64); repeatable")
    add_arguments(parser, DegradationSettings, include=["jobs", "out", "quiet"])
    add_launch_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    return finish("degradation", lambda: run_degradation(
        settings=settings_given(args, DegradationSettings), seeds=args.seeds, seed=args.seed,
        overrides=parse_overrides(args.settings)))
