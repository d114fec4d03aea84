"""``reslab analyze responses``: std of each block's residual function, plain vs residual (He et al. Fig. 7)."""

from __future__ import annotations

import math

from reslab.analysis.common import device_of, resolve_twin
from reslab.analysis.responses import ResponsesSettings, analyze_responses
from reslab.cli._analysis import (
    add_target_arguments,
    load_main_target,
    output_dir,
    print_written,
    save_with_plots,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "responses", help="std of each block's residual function F(x), plain vs residual (He et al. Fig. 7)",
        description="Standard deviation of every block's branch output F(x) (after its last BN, before the "
                    "addition) over test images, in eval mode; for the model and, with --twin, its twin. "
                    "Writes responses.json and responses.png.",
    )
    add_target_arguments(parser, samples_default=1000, samples_help="test images to measure on",
                         batch_size_default=ResponsesSettings.default("batch_size"))
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.report.plots import plot_responses  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    target = load_main_target(args)
    twin = resolve_twin(target, args.twin)
    targets = [target] + ([twin] if twin is not None else [])
    x, _ = target.samples("test", args.samples, seed=args.seed)
    result = analyze_responses(targets, x, describe=target.describe(), batch_size=args.batch_size,
                               device=str(device_of(args.device)), seed=args.seed)
    written = save_with_plots(result, output_dir(args, target), [("", plot_responses)], force=args.force)
    print(f"{'model':<28} {'blocks':>6} {'mean std':>9} {'max std':>9} {'min std':>9}")
    for series in result.series:
        std = [v for v in series.std if math.isfinite(v)]
        print(f"{series.label:<28} {len(std):>6} {sum(std) / max(1, len(std)):>9.4f} {max(std, default=0):>9.4f} "
              f"{min(std, default=0):>9.4f}")
    print_written(written)
    return 0
