"""``reslab experiment lr-depth``: the best peak learning rate per depth, residual nets vs their plain twins."""

from __future__ import annotations

from reslab.cli._launch import add_launch_arguments, settings_given
from reslab.cli.experiment import finish
from reslab.settings import add_arguments


def register(subparsers) -> None:
    from reslab.experiments.lr_depth import LrDepthSettings  # noqa: PLC0415 - light: optuna is imported lazily

    parser = subparsers.add_parser(
        "lr-depth", help="search the best peak lr per depth for residual nets and their plain twins (Optuna)",
        description="One Optuna study per depth × twin (resnet{d} / plain{d}) over the peak learning rate "
                    "(log-uniform between --lr-min and --lr-max), every other setting from the recipe "
                    "(digits-degradation on the digits); trials are runs, through any launcher. Writes "
                    "lr_depth.json and lr_depth.png; reslab report shows them. Default: depths 20 56 110, 8 trials "
                    "each, about 15 minutes on two cores; --quick about a minute. Resumable. Needs optuna.",
    )
    add_arguments(parser, LrDepthSettings, include=["depths", "data", "data_dir", "recipe", "trials", "epochs",
                                                    "lr_min", "lr_max", "start_points", "sampler", "pruner", "metric", "seed",
                                                    "quick"])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting, the same for every trial; repeatable")
    add_arguments(parser, LrDepthSettings, include=["jobs", "out", "quiet"])
    add_launch_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.experiments.lr_depth import LrDepthSettings, run_lr_depth  # noqa: PLC0415
    from reslab.train import parse_overrides  # noqa: PLC0415

    return finish("lr-depth", lambda: run_lr_depth(settings=settings_given(args, LrDepthSettings),
                                                   overrides=parse_overrides(args.settings)))
