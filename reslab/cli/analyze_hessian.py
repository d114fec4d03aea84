"""``reslab analyze hessian``: top eigenvalues, trace, spectral density and convexity of the loss's Hessian."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reslab.analysis import hessian
from reslab.analysis.common import (
    default_out_dir,
    device_of,
    progress_enabled,
    resolve_twin,
)
from reslab.analysis.hessian import HessianSettings, analyze_hessian
from reslab.analysis.landscape.surface import parse_grid
from reslab.cli._analysis import (
    TARGET_OR_CHECKPOINT,
    add_target_arguments,
    parse_key_values,
    print_written,
)
from reslab.cli.analyze_landscape import resolve_target, set_threads
from reslab.settings import add_arguments, given


def register(subparsers) -> None:
    # Looked up at call time, so the analysis's settings class is the one source of these defaults.
    HessianSettings = hessian.HessianSettings  # noqa: N806
    parser = subparsers.add_parser(
        "hessian", help="curvature: top Hessian eigenvalues, trace, eigenvalue density, |λmin/λmax| (map)",
        description="Curvature of the mean cross-entropy at a checkpoint (BN in eval mode), from exact "
                    "Hessian-vector products: top-k eigenvalues by power iteration with deflation, λmin and "
                    "Li et al.'s convexity measure |λmin/λmax|, optionally the trace (Hutchinson), the eigenvalue "
                    "density (stochastic Lanczos quadrature) and a map of |λmin/λmax| over a coarse grid of the "
                    "random filter-normalised plane of --seed. Writes hessian.json (+ .npz) and PNGs.",
    )
    add_target_arguments(
        parser, samples_default=HessianSettings.default("samples"),
        samples_help="images of the split the loss is averaged over",
        batch_size_default=HessianSettings.default("batch_size"),
        helps={"target": TARGET_OR_CHECKPOINT,
               "seed": "seed of the random vectors, of the map's plane (as landscape --seed) and of fresh models "
                       "(default 0)",
               "out": ("output directory, or the .json file to write (default: RUN_DIR/analysis, or analysis/MODEL "
                       "for a model name)", "DIR|FILE.json")})
    add_arguments(parser, HessianSettings, include=["sample_seed"])
    curvature = parser.add_argument_group("curvature")
    add_arguments(curvature, HessianSettings, exclude=["sample_seed"])
    curvature.add_argument("--map", action="store_true",
                           help="map λmin, λmax and |λmin/λmax| over a grid of the random plane")
    curvature.add_argument("--grid", default="-1:1:7", metavar="START:STOP:N",
                           help="the map's grid along both directions (default -1:1:7; negative bounds are written "
                                "--grid=-1:1:7)")
    curvature.add_argument("--threads", type=int, default=None, metavar="N",
                           help="torch CPU threads (default: torch's choice; on a busy shared machine fewer threads "
                                "can be much faster)")
    curvature.add_argument("--no-plots", action="store_true", help="write the result files only")
    parser.set_defaults(func=run)


def settings_of(args) -> HessianSettings:
    """The :class:`HessianSettings` the command line asks for."""
    HessianSettings = hessian.HessianSettings  # noqa: N806 - see register
    map_grid = None
    if args.map:
        low, high, points = parse_grid(args.grid, "--grid")
        map_grid = (-1.0 if low is None else low, 1.0 if high is None else high, points)
    return HessianSettings.of(given(args, HessianSettings), samples=args.samples, seed=args.seed,
                              batch_size=args.batch_size, device=str(device_of(args.device)), map_grid=map_grid)


def run(args) -> int:
    parse_key_values(args.data_option, "--data-option")
    set_threads(args.threads)
    settings = settings_of(args)
    target = resolve_target(args)
    twin = resolve_twin(target, args.twin)
    targets = [target] + ([twin] if twin is not None else [])
    written = []
    print(f"{'model':<28} {'loss':>8} {'λmax':>10} {'λmin':>10} {'|λmin/λmax|':>12} {'trace':>12}  top-k")
    for item in targets:
        result = analyze_hessian(item, settings, progress=progress_enabled(args.quiet))
        out = Path(args.out) if args.out else default_out_dir(item)
        if len(targets) > 1 and args.out:
            out = (out.parent / out.stem if out.suffix == ".json" else out) / item.label.replace("/", "_")
        path = result.save(out if out.suffix == ".json" else out / "hessian.json", force=args.force)
        written.append(path)
        if path.with_suffix(".npz").exists():
            written.append(path.with_suffix(".npz"))
        if not args.no_plots:
            from reslab.report.landscape_plots import save_hessian_plots  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

            written.extend(save_hessian_plots(path))
        trace = "–" if result.trace is None else f"{result.trace:.4g}±{result.trace_std_error:.2g}"
        top = ", ".join(f"{v:.4g}" for v in result.top_eigenvalues)
        print(f"{item.label:<28} {result.loss:>8.4f} {result.lambda_max:>10.4g} {result.lambda_min:>10.4g} "
              f"{result.convexity_ratio:>12.4g} {trace:>12}  {top}")
        if result.map is not None:
            ratio = np.asarray(result.map["ratio"], dtype=float)
            print(f"{'':<28} map: |λmin/λmax| mean {np.nanmean(ratio):.4g}, max {np.nanmax(ratio):.4g} over "
                  f"{ratio.size} points")
    print_written(written)
    return 0
