"""``reslab analyze lesion``: test error with blocks removed at test time (Veit et al. 2016)."""

from __future__ import annotations

from reslab.analysis.common import device_of, resolve_twin
from reslab.analysis.lesion import LesionSettings, analyze_lesion
from reslab.cli._analysis import (
    add_target_arguments,
    load_main_target,
    output_dir,
    print_written,
    progress,
    save_with_plots,
)
from reslab.settings import add_arguments, given


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lesion", help="test error with one / k random blocks removed (Veit et al. 2016)",
        description="Remove blocks at test time (residual: drop the branch, keep the shortcut; plain: only "
                    "blocks that keep the shape, which become the identity) and measure the test error: each "
                    "block alone, then k random blocks for k = 1..K. Writes lesion.json and lesion.png.",
    )
    add_target_arguments(parser, samples_default=None, samples_help="test images to evaluate on",
                         batch_size_default=LesionSettings.default("batch_size"))
    add_arguments(parser, LesionSettings)
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.report.plots import plot_lesion  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    target = load_main_target(args)
    twin = resolve_twin(target, args.twin)
    targets = [target] + ([twin] if twin is not None else [])
    x, y = target.samples("test", args.samples, seed=args.seed)
    settings = LesionSettings.of(given(args, LesionSettings), seed=args.seed, batch_size=args.batch_size,
                                 device=str(device_of(args.device)), progress=progress(args))
    result = analyze_lesion(targets, x, y, settings, describe=target.describe())
    written = save_with_plots(result, output_dir(args, target), [("", plot_lesion)], force=args.force)
    print(f"{'model':<28} {'removable':>9} {'base error':>10} {'mean, 1 removed':>15} {'worst, 1 removed':>16}")
    for series in result.series:
        singles = [e for e in series.single_block_error if e is not None]
        print(f"{series.label:<28} {len(series.removable):>9} {100 * series.base_error:>9.2f}% "
              f"{100 * sum(singles) / len(singles):>14.2f}% {100 * max(singles):>15.2f}%")
    print_written(written)
    return 0
