"""``reslab report PATH... -o report.html``: one self-contained HTML report of runs and experiments."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML report (plots embedded) of runs, experiments and analyses",
        description="Build one HTML file — inline CSS, PNG figures embedded — from run directories (config.json, "
                    "metrics.jsonl, analysis/), experiment directories (run directories plus summary files such "
                    "as degradation.json) and analysis output directories. Plots are drawn from the saved "
                    "files; nothing is recomputed.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run, experiment or analysis directories")
    parser.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    parser.add_argument("--title", default=None, help="title of the report (default 'reslab report')")
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.report import build_report  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    result = build_report(args.paths, args.output, title=args.title)
    for warning in result.warnings:
        print(f"reslab report: warning: {warning}", file=sys.stderr)
    if result.sections:
        shown = ", ".join(result.sections)
    elif result.skipped:
        shown = "none"
    else:
        shown = "none (no run, analysis or experiment files found)"
    if result.skipped:
        shown += f"; skipped: {', '.join(result.skipped)} (could not be built, see the warnings above)"
    print(f"wrote {result.path} ({_count(len(result.run_dirs), 'run')}, {_count(len(result.experiment_dirs), 'experiment')}; "
          f"sections: {shown})")
    return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
