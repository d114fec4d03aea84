"""``reslab`` command: dispatch to one module per command.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` (a function taking the parsed arguments and returning an exit code or ``None``).
User mistakes raise :class:`reslab.errors.ReslabError`; they are printed as one line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from reslab.errors import ReslabError

# Order is the order in ``reslab --help``.
COMMAND_MODULES = (
    "reslab.cli.profile",
    "reslab.cli.train",
    "reslab.cli.evaluate",
    "reslab.cli.predict",
    "reslab.cli.analyze",
    "reslab.cli.experiment",
    "reslab.cli.report",
    "reslab.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    from reslab import __version__

    parser = argparse.ArgumentParser(
        prog="reslab",
        description="Residual networks: build the family with plain twins, train them, measure why they work.",
    )
    parser.add_argument("--version", action="version", version=f"reslab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        code = args.func(args)
    except ReslabError as exc:
        print(f"reslab {args.command}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"reslab {args.command}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
