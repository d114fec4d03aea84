"""``reslab experiment KIND ...``: experiments that train several runs and analyse them."""

from __future__ import annotations

import importlib

EXPERIMENT_MODULES = (
    "reslab.cli.experiment_degradation",
    "reslab.cli.experiment_landscape",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="train residual and plain twins and compare them (degradation, landscape)",
        description="Experiments: resumable collections of training runs plus their analyses.",
    )
    kinds = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for module_name in EXPERIMENT_MODULES:
        importlib.import_module(module_name).register(kinds)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
