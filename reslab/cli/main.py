"""``reslab`` command: dispatch to one module per command.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` (a function taking the parsed arguments and returning an exit code or ``None``).
User mistakes raise :class:`reslab.errors.ReslabError`; they are printed as one line on stderr
with exit status 2, never as a traceback. Warnings of reslab's own types (such as
:class:`reslab.store.jsonfiles.PartialLineWarning`) are printed as one line too,
``reslab COMMAND: warning: MESSAGE``; warnings of other libraries keep Python's format.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

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
    "reslab.cli.sweep",
    "reslab.cli.search",
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


def _is_reslab_warning(category: type[Warning]) -> bool:
    """A warning type defined in reslab: its message is written for the user, like an error's."""
    module = getattr(category, "__module__", "") or ""
    return module == "reslab" or module.startswith("reslab.")


@contextlib.contextmanager
def warnings_in_one_line(command: str):
    """While a command runs, print reslab's own warnings as ``reslab COMMAND: warning: MESSAGE``.

    Python's format (the source file and line of the ``warnings.warn`` call, then that line) tells
    a user of the command nothing; what the message says about their files is all they need.
    Which warnings are shown, and how often, is still decided by the warnings filters.
    """
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not _is_reslab_warning(category):
            original(message, category, filename, lineno, file, line)
            return
        stream = file if file is not None else sys.stderr
        try:
            print(f"reslab {command}: warning: {message}", file=stream)
        except OSError:
            pass  # stderr closed: a warning is not worth failing the command for, as in Python's own

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        sys.exit(2)
    try:
        with warnings_in_one_line(args.command):
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
