"""``reslab experiment KIND ...``: experiments that train several runs and analyse them."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

EXPERIMENT_MODULES = (
    "reslab.cli.experiment_degradation",
    "reslab.cli.experiment_landscape",
    "reslab.cli.experiment_lr_depth",
    "reslab.cli.experiment_sweeps",
    "reslab.cli.experiment_transfer",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="train residual and plain twins and compare them (degradation, landscape, lr-depth, transformer, rnn, mlp, dropout, family, transfer)",
        description="Experiments: resumable collections of training runs plus their analyses.",
    )
    kinds = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for module_name in EXPERIMENT_MODULES:
        importlib.import_module(module_name).register(kinds)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def finish(name: str, start: Callable[[], Any], *extra_lines: Callable[[Any], str], prefix: str | None = None,
           resume_hint: str | None = None) -> int:
    """Run an experiment for its command: ``start()`` → its result, printed as the table, the files and
    ``extra_lines``; 130 (with a line saying how to resume) when interrupted or stopped early."""
    prefix = prefix or f"reslab experiment {name}"
    how = resume_hint or "run the same command again"
    try:
        result = start()
    except KeyboardInterrupt:
        # The runs in flight saved their checkpoints (the trainer stops cleanly on SIGINT) and a
        # grid its partial file: the same command continues.
        print(f"{prefix}: interrupted; {how} to resume", file=sys.stderr)
        return 130
    if not result.complete:
        print(f"{prefix}: stopped before everything finished; {how} to resume", file=sys.stderr)
        return 130
    print(result.table())
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    for line in extra_lines:
        print(line(result))
    return 0
