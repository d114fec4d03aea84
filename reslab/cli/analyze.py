"""``reslab analyze KIND ...``: one sub-command per analysis, each in its own module."""

from __future__ import annotations

import importlib

ANALYSIS_MODULES = (
    "reslab.cli.analyze_gradients",
    "reslab.cli.analyze_responses",
    "reslab.cli.analyze_lesion",
    "reslab.cli.analyze_landscape",
    "reslab.cli.analyze_hessian",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze", help="measure a model: gradients, responses, lesion, landscape, hessian",
        description="Analyses of a trained run (RUN_DIR) or a freshly initialised model (MODEL name).",
    )
    kinds = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    for module_name in ANALYSIS_MODULES:
        importlib.import_module(module_name).register(kinds)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
