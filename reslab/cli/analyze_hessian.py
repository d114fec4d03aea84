"""``reslab analyze hessian``: top eigenvalues, trace, spectral density and convexity of the loss's Hessian."""

from __future__ import annotations

from pathlib import Path

from reslab.cli._analysis import add_target_arguments, parse_key_values, print_written
from reslab.cli.analyze_landscape import _set_help, allow_negative_ranges, resolve_target, set_threads


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hessian", help="curvature: top Hessian eigenvalues, trace, eigenvalue density, |λmin/λmax| (map)",
        description="Curvature of the mean cross-entropy at a checkpoint (BN in eval mode), from exact "
                    "Hessian-vector products: top-k eigenvalues by power iteration with deflation, λmin and "
                    "Li et al.'s convexity measure |λmin/λmax|, optionally the trace (Hutchinson), the eigenvalue "
                    "density (stochastic Lanczos quadrature) and a map of |λmin/λmax| over a coarse grid of the "
                    "random filter-normalised plane of --seed. Writes hessian.json (+ .npz) and PNGs.",
    )
    add_target_arguments(parser, samples_default=512, samples_help="images of the split the loss is averaged over",
                         batch_size_default=256)
    _set_help(parser, "target", "a run directory, a checkpoint file inside one (RUN/checkpoints/x.safetensors), or a "
                                "model name (fresh, seeded initialisation; needs --data)", "RUN_DIR|CHECKPOINT|MODEL")
    _set_help(parser, "seed", "seed of the random vectors, of the map's plane (as landscape --seed) and of fresh "
                              "models (default 0)")
    parser.add_argument("--sample-seed", type=int, default=0,
                        help="seed of the choice of --samples images (default 0: the same images whatever --seed)")
    _set_help(parser, "out", "output directory, or the .json file to write (default: RUN_DIR/analysis, or "
                             "analysis/MODEL for a model name)", "DIR|FILE.json")
    curvature = parser.add_argument_group("curvature")
    curvature.add_argument("--split", choices=["train", "test"], default="train", help="which split (default train)")
    curvature.add_argument("--top-k", type=int, default=5,
                           help="eigenvalues of largest magnitude (default 5; 0 = skip)")
    curvature.add_argument("--max-iterations", type=int, default=100,
                           help="power iterations per eigenvalue at most (default 100)")
    curvature.add_argument("--tol", type=float, default=1e-4,
                           help="stop an eigenvalue when it changes by less than this, relatively (default 1e-4)")
    curvature.add_argument("--min-method", choices=["lanczos", "power"], default="lanczos",
                           help="λmin from the smallest Ritz value of a Lanczos run (default) or by power iteration "
                                "on H − λmax·I")
    curvature.add_argument("--extreme-steps", type=int, default=40, help="Lanczos steps for λmin/λmax (default 40)")
    curvature.add_argument("--trace", action="store_true", help="estimate the trace (Hutchinson)")
    curvature.add_argument("--trace-probes", type=int, default=100, help="Rademacher probes (default 100)")
    curvature.add_argument("--density", action="store_true", help="eigenvalue density (stochastic Lanczos quadrature)")
    curvature.add_argument("--density-steps", type=int, default=80, help="Lanczos steps per start (default 80)")
    curvature.add_argument("--density-starts", type=int, default=3, help="random starts (default 3)")
    curvature.add_argument("--density-sigma", type=float, default=0.01,
                           help="Gaussian broadening, as a fraction of the spectrum's width (default 0.01)")
    curvature.add_argument("--map", action="store_true",
                           help="map λmin, λmax and |λmin/λmax| over a grid of the random plane")
    curvature.add_argument("--grid", default="-1:1:7", metavar="START:STOP:N",
                           help="the map's grid along both directions (default -1:1:7)")
    curvature.add_argument("--map-steps", type=int, default=20, help="Lanczos steps per map point (default 20)")
    curvature.add_argument("--keep-bn-bias", action="store_true",
                           help="the map's plane also perturbs BN γ/β and biases (as landscape --keep-bn-bias)")
    curvature.add_argument("--hvp", choices=["double_backward", "forward_over_reverse"], default="double_backward",
                           help="how Hessian-vector products are computed (default double_backward)")
    curvature.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default: torch's choice; on a busy shared machine fewer threads "
                            "can be much faster)")
    curvature.add_argument("--no-plots", action="store_true", help="write the result files only")
    allow_negative_ranges(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.analysis.common import default_out_dir, device_of, progress_enabled, resolve_twin
    from reslab.analysis.hessian import analyze_hessian
    from reslab.analysis.landscape.surface import parse_grid
    from reslab.errors import ConfigError
    from reslab.report.landscape_plots import save_hessian_plots

    parse_key_values(args.data_option, "--data-option")
    set_threads(args.threads)
    map_grid = None
    if args.map:
        low, high, points = parse_grid(args.grid, "--grid")
        if low is None:
            low, high = -1.0, 1.0
        map_grid = (low, high, points)
    for name in ("top_k", "trace_probes", "density_steps", "density_starts", "map_steps", "extreme_steps"):
        if getattr(args, name) < (0 if name == "top_k" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be {'0 or more' if name == 'top_k' else 'at least 1'}, "
                              f"got {getattr(args, name)}")
    target = resolve_target(args)
    twin = resolve_twin(target, args.twin)
    targets = [target] + ([twin] if twin is not None else [])
    written = []
    print(f"{'model':<28} {'loss':>8} {'λmax':>10} {'λmin':>10} {'|λmin/λmax|':>12} {'trace':>12}  top-k")
    for item in targets:
        result = analyze_hessian(
            item, samples=args.samples, split=args.split, seed=args.seed, sample_seed=args.sample_seed,
            top_k=args.top_k,
            max_iterations=args.max_iterations, tol=args.tol, trace=args.trace, trace_probes=args.trace_probes,
            density=args.density, density_steps=args.density_steps, density_starts=args.density_starts,
            density_sigma=args.density_sigma, min_method=args.min_method, extreme_steps=args.extreme_steps,
            map_grid=map_grid, map_steps=args.map_steps, keep_bn_bias=args.keep_bn_bias, batch_size=args.batch_size,
            device=device_of(args.device), hvp_method=args.hvp, progress=progress_enabled(args.quiet),
        )
        out = Path(args.out) if args.out else default_out_dir(item)
        if len(targets) > 1 and args.out:
            out = (out.parent / out.stem if out.suffix == ".json" else out) / item.label.replace("/", "_")
        path = result.save(out if out.suffix == ".json" else out / "hessian.json")
        written.append(path)
        if path.with_suffix(".npz").exists():
            written.append(path.with_suffix(".npz"))
        if not args.no_plots:
            written.extend(save_hessian_plots(path))
        trace = "–" if result.trace is None else f"{result.trace:.4g}±{result.trace_std_error:.2g}"
        top = ", ".join(f"{v:.4g}" for v in result.top_eigenvalues)
        print(f"{item.label:<28} {result.loss:>8.4f} {result.lambda_max:>10.4g} {result.lambda_min:>10.4g} "
              f"{result.convexity_ratio:>12.4g} {trace:>12}  {top}")
        if result.map is not None:
            import numpy as np

            ratio = np.asarray(result.map["ratio"], dtype=float)
            print(f"{'':<28} map: |λmin/λmax| mean {np.nanmean(ratio):.4g}, max {np.nanmax(ratio):.4g} over "
                  f"{ratio.size} points")
    print_written(written)
    return 0
