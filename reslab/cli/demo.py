"""``reslab demo``: the main job of ``make demo`` — degradation on the digits, analyses, one report.

What it does (on a CPU, in a few minutes):

1. ``reslab experiment degradation --depths 20 56 110 --data digits --recipe digits-degradation``
   into ``OUT/degradation/``: ResNet-20/56/110 and their plain twins, 15-epoch one-cycle, seed 0,
   one thread per run and up to one run per core at a time (so the numbers do not depend on the
   machine's core count);
2. the analyses of the trained twins, each exactly the ``reslab analyze`` command it prints:
   gradient flow and layer responses at every depth, the lesion study at the shallower depths
   (where both twins have trained weights worth removing blocks from; at depth 110 it is the
   slowest step and ``reslab analyze lesion OUT/degradation/resnet110-s0 --twin`` does it);
   the loss landscape (a 2-D filter-normalised random plane and a 1-D line) and the Hessian
   (λmax, λmin, |λmin/λmax|, trace) of ResNet-56 and its plain twin;
3. ``reslab report OUT/degradation -o OUT/report.html``;

then prints the table of final errors and the path of the report. Resumable like the
experiment: run it again and finished runs are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from reslab.cli.main import build_parser
from reslab.experiments import cpu_count, run_degradation
from reslab.experiments.common import stderr_printer
from reslab.experiments.degradation import run_name, twin_models
from reslab.utils import atomic_write_text

DEMO_DEPTHS = (20, 56, 110)
DEMO_RECIPE = "digits-degradation"
#: Lesion settings of the demo: every single block, and k = 1..10 random blocks in 5 draws each
#: (the full default, up to 20 blocks in 10 draws, takes minutes at depth 56 on a CPU).
LESION_OPTIONS = ("--max-removed", "10", "--draws", "5")
LESION_MAX_DEPTH = 56
#: Loss landscape and curvature of one twin pair (Li et al. 2018 compare ResNet-56 with its plain
#: twin): the demo depth closest to this. The settings keep both within the demo's budget on
#: two cores: the 2-D plane 11×11 and the 1-D line 21 points on all 1,438 training images; the
#: Hessian on 256 images, λmax/λmin by 20 Lanczos steps, the trace by 20 Hutchinson probes.
CURVATURE_DEPTH = 56
LANDSCAPE_2D_OPTIONS = ("--dims", "2", "--grid", "11", "--samples", "1438")
LANDSCAPE_1D_OPTIONS = ("--dims", "1", "--grid", "21", "--samples", "1438")
HESSIAN_OPTIONS = ("--samples", "256", "--top-k", "0", "--extreme-steps", "20", "--trace", "--trace-probes", "20")


def curvature_depth(depths: list[int]) -> int:
    """The depth whose twins get the landscape and Hessian analyses."""
    return min(depths, key=lambda depth: (abs(depth - CURVATURE_DEPTH), -depth))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the degradation experiment on the embedded digits + analyses + HTML report (a few minutes)",
        description="Train ResNet-20/56/110 and their plain twins on the embedded 8x8 digits (15-epoch one-cycle, "
                    "the same recipe and seed for all), analyse the twins (gradient flow, layer responses, "
                    "lesions; loss landscape and Hessian at depth 56) and write OUT/report.html; prints the final errors. Runs on a CPU in a few minutes; "
                    "rerunning reuses finished runs.",
    )
    parser.add_argument("--out", default="demo", help="output directory (default demo)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary table and the report's path")
    # For tests and quick looks; the demo is the defaults.
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEMO_DEPTHS), help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _run_command(argv: list[str]) -> str:
    """Run one ``reslab`` command in this process; returns what it printed."""

    torch.set_num_threads(1)
    args = build_parser().parse_args(argv)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        args.func(args)
    return buffer.getvalue()


def analysis_commands(experiment_dir: Path, depths: list[int], quiet: bool = True) -> list[list[str]]:
    """The ``reslab analyze`` commands the demo runs, slowest first."""
    commands = []
    # Landscapes and Hessians of the residual net and its plain twin, one command per network
    # (the same seeds give both the same directions and probes) so two workers share them.
    curved = curvature_depth(depths)
    pair = [str(experiment_dir / run_name(model, 0)) for model in twin_models(curved)]
    quiet_flag = ["--quiet"] if quiet else []
    for options in (LANDSCAPE_2D_OPTIONS, HESSIAN_OPTIONS, LANDSCAPE_1D_OPTIONS):
        analysis = "hessian" if options is HESSIAN_OPTIONS else "landscape"
        commands.extend(["analyze", analysis, run_dir, *options, *quiet_flag] for run_dir in pair)
    deepest = max(depths)
    for depth in sorted(depths, reverse=True):
        run_dir = str(experiment_dir / run_name(twin_models(depth)[0], 0))
        tail = ["--twin", "--quiet"] if quiet else ["--twin"]
        if depth <= LESION_MAX_DEPTH:
            commands.append(["analyze", "lesion", run_dir, *LESION_OPTIONS, *tail])
        # The no-BN MLP case does not depend on the run: measure (and show) it once.
        classic = [] if depth == deepest else ["--no-classic"]
        commands.append(["analyze", "gradients", run_dir, *classic, *tail])
        commands.append(["analyze", "responses", run_dir, *tail])
    return commands


def run_commands(commands: list[list[str]], jobs: int, say) -> list[tuple[list[str], str]]:
    """Run ``reslab`` commands, ``jobs`` at a time in worker processes; returns (argv, output) in order."""
    if jobs <= 1:
        outputs = []
        for argv in commands:
            start = time.perf_counter()
            outputs.append((argv, _run_command(argv)))
            say(f"reslab {shlex.join(argv)} ({time.perf_counter() - start:.1f} s)")
        return outputs

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_command, argv) for argv in commands]
        outputs = []
        for argv, future in zip(commands, futures):
            outputs.append((argv, future.result()))
            say(f"reslab {shlex.join(argv)} (done at {time.perf_counter() - start:.1f} s)")
    return outputs


def headline(summary: dict) -> str:
    """One line per kind: final training error at each depth (what the degradation problem is about)."""
    lines = []
    for kind, label in (("plain", "plain nets"), ("residual", "residual nets")):
        runs = sorted((r for r in summary.get("runs", []) if r.get("kind") == kind), key=lambda r: r["depth"])
        parts = [f"{r['depth']} layers {100 * r['final_train_error']:.1f}%" for r in runs
                 if isinstance(r.get("final_train_error"), (int, float))]
        if parts:
            lines.append(f"  {label + ':':<15} final training error " + ", ".join(parts))
    return "\n".join(lines)


def run(args) -> int:
    from reslab.report import build_report  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    start = time.perf_counter()
    out = Path(args.out)
    say = stderr_printer("reslab demo", enabled=not args.quiet)
    cores = cpu_count()
    # One thread per run, one run per core: tiny 8x8 convolutions do not scale across threads,
    # and a fixed thread count keeps the numbers identical on every machine.
    jobs = args.jobs if args.jobs is not None else max(1, min(cores, 2 * len(args.depths)))
    say(f"training {2 * len(args.depths)} networks on the embedded digits ({jobs} at a time, 1 thread each), "
        f"then analysing them; writes {out}/")
    try:
        result = run_degradation(
            args.depths, "digits", recipe=DEMO_RECIPE, epochs=args.epochs, overrides={"threads": 1},
            out=out / "degradation", jobs=jobs, quiet=args.quiet, say=say if not args.quiet else None,
            epoch_lines=False,
        )
    except KeyboardInterrupt:
        print("reslab demo: interrupted; run it again to resume", file=sys.stderr)
        return 130
    if not result.complete:
        print("reslab demo: stopped before every run finished; run it again to resume", file=sys.stderr)
        return 130
    train_done = time.perf_counter()

    commands = analysis_commands(result.experiment_dir, args.depths)
    outputs = run_commands(commands, min(jobs, len(commands)), say)
    log = "".join(f"$ reslab {shlex.join(argv)}\n{text}\n" for argv, text in outputs)

    atomic_write_text(out / "analyses.log", log)
    analyses_done = time.perf_counter()

    report = build_report([result.experiment_dir], out / "report.html",
                          title="reslab demo: plain vs residual networks on the digits")
    for warning in report.warnings:
        print(f"reslab demo: warning: {warning}", file=sys.stderr)
    elapsed = time.perf_counter() - start

    summary = result.summary or {}
    print(f"Degradation on the embedded digits ({summary.get('budget', '')}); seed 0, same recipe for all:")
    print(result.table())
    print(headline(summary))
    print(f"time: {elapsed:.0f} s (training {train_done - start:.0f} s, analyses {analyses_done - train_done:.0f} s, "
          f"report {elapsed - (analyses_done - start):.0f} s); runs trained now: {result.trained} of "
          f"{len(result.outcomes)}")
    print(f"report: {report.path}  (analysis outputs: {out / 'analyses.log'}, experiment: {result.experiment_dir})")
    return 0
