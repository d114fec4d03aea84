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

from reslab import __version__
from reslab.errors import ReslabError

# Order is the order in ``reslab --help``.
COMMAND_MODULES = (
    "reslab.cli.profile",
    "reslab.cli.train",
    "reslab.cli.finetune",
    "reslab.cli.evaluate",
    "reslab.cli.predict",
    "reslab.cli.export",
    "reslab.cli.bench",
    "reslab.cli.analyze",
    "reslab.cli.experiment",
    "reslab.cli.report",
    "reslab.cli.demo",
)


class Parser(argparse.ArgumentParser):
    """argparse, with a hint where its own message leaves a user stuck.

    argparse reads a value that starts with '-' as the next option unless it looks like a plain
    negative number, so ``--grid -1:1:51`` ends in "expected one argument". Its public way out
    is ``--grid=-1:1:51``; the message says so.
    """

    def error(self, message: str):
        if message.endswith("expected one argument"):
            flag = message.split()[1].rstrip(":") if message.startswith("argument ") else "--option"
            message += (f" (a value that starts with '-', such as a negative grid bound, is written with '=': "
                        f"{flag.split('/')[0]}=-1:1:51)")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
