"""``reslab analyze gradients``: per-layer gradient norms, plain vs residual, plus the no-BN classic case."""

from __future__ import annotations

from reslab.analysis.common import checkpoint_lr, device_of, resolve_twin
from reslab.analysis.gradients import GradientSettings, analyze_gradients
from reslab.cli._analysis import (
    add_target_arguments,
    load_main_target,
    output_dir,
    print_written,
    progress,
    save_with_plots,
)
from reslab.errors import AnalysisError
from reslab.settings import add_arguments, given
from reslab.store.rundir import TASK_CLASSIFY
from reslab.train.loading import TASK_NOUNS, names_run_checkpoint


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gradients", help="gradient norm per layer at init and checkpoints, plain vs residual",
        description="Per-weight-layer gradient norms and update-to-weight ratios of a model (and its twin) at "
                    "initialisation and at chosen checkpoints, plus a deep no-BN MLP where vanishing gradients "
                    "are stark, and optionally the shattered-gradients correlation. Writes gradients.json/.npz "
                    "and gradients*.png.",
    )
    add_target_arguments(parser, samples_default=512, samples_help="training images the gradient is averaged over",
                         batch_size_default=GradientSettings.default("batch_size"), checkpoint=False)
    parser.add_argument("--checkpoints", nargs="+", metavar="NAME", default=None,
                        help="for a RUN_DIR: checkpoints to measure (init last epoch_K ...; default: init last); "
                             "for a MODEL: init (a fresh initialisation) and/or weights files (.pth, .safetensors, ...)")
    classic = parser.add_argument_group("classic case (deep MLP without batch norm)")
    classic.add_argument("--no-classic", action="store_true", help="skip the classic no-BN case")
    add_arguments(classic, GradientSettings, include=["classic_depth", "classic_activation"])
    shattered = parser.add_argument_group("shattered gradients (Balduzzi et al. 2017)")
    shattered.add_argument("--shattered", action="store_true",
                           help="also measure the correlation of input gradients along a line between two images")
    add_arguments(shattered, GradientSettings, include=["shattered_steps"])
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.report.plots import (  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import
        plot_classic_gradients,
        plot_gradient_flow,
        plot_shattered,
    )

    device = device_of(args.device)
    checkpoints = args.checkpoints
    first = load_main_target(args, checkpoint=(checkpoints or ["init"])[0])
    if first.run_dir is None:
        named = [name for name in checkpoints or [] if name != "init" and names_run_checkpoint(name)]
        if named:
            raise AnalysisError(f"--checkpoints {' '.join(named)}: {args.target} is a model name, a fresh "
                                "initialisation with no checkpoints; pass a RUN_DIR to measure trained weights, or "
                                "weights files for the model (--checkpoints FILE ...)")
        checkpoints = checkpoints or ["init"]
    elif checkpoints is None:
        checkpoints = ["init", "last"]
    dataset = first.dataset
    if args.shattered and first.task != TASK_CLASSIFY:
        raise AnalysisError(f"--shattered follows a classifier's logits along a line between two images; "
                            f"{args.target} is a {TASK_NOUNS[first.task]}: leave out --shattered (the gradient norms "
                            "per layer are measured on its loss)")

    targets = []
    main_targets = []
    for name in checkpoints:
        target = first if name == first.checkpoint else load_main_target_with(args, name, dataset)
        main_targets.append(target)
        targets.append((target, checkpoint_lr(target)))
    twins = []
    if args.twin is not None:
        for target in main_targets:
            twin = resolve_twin(target, args.twin, checkpoint=target.checkpoint, dataset=dataset)
            if twin.run_dir is None and any(t.run_dir is None for t in twins):
                continue  # a fresh twin exists only at initialisation: measure it once
            twins.append(twin)
    # Residual series first, then plain, each in checkpoint order (plots darken the shade with training).
    all_targets = sorted(targets + [(t, checkpoint_lr(t)) for t in twins], key=lambda item: item[0].kind != "residual")

    x, y = first.samples("train", args.samples, seed=args.seed)
    line = None
    shattered_targets = []
    if args.shattered:
        xt, yt = first.samples("test", 256, seed=args.seed)
        other = (yt != yt[0]).nonzero()
        end = int(other[0]) if other.numel() else min(1, xt.shape[0] - 1)
        line = (xt[0], xt[end])
        shattered_targets = [main_targets[-1]] + [t for t in twins if t.checkpoint == main_targets[-1].checkpoint][:1]

    settings = GradientSettings.of(given(args, GradientSettings), batch_size=args.batch_size, device=str(device),
                                   classic=not args.no_classic, seed=args.seed, progress=progress(args))
    result = analyze_gradients(all_targets, x, y, settings, describe=first.describe(), shattered=shattered_targets,
                               line=line)
    result.target["checkpoints"] = checkpoints
    plots = [("", plot_gradient_flow)]
    if result.classic:
        plots.append(("_classic", plot_classic_gradients))
    if result.shattered:
        plots.append(("_shattered", plot_shattered))
    written = save_with_plots(result, output_dir(args, first), plots, force=args.force,
                              all_suffixes=("", "_classic", "_shattered"))

    print(f"{'model':<32} {'|g| first layer':>16} {'|g| last layer':>15} {'first/last':>11}")
    for series in result.series + result.classic:
        print(f"{series.label:<32} {series.grad_norm[0]:>16.3e} {series.grad_norm[-1]:>15.3e} "
              f"{series.first_last_ratio:>11.3g}")
    print_written(written)
    return 0


def load_main_target_with(args, checkpoint: str, dataset):
    """The target at another checkpoint (of its run, or another weights file), reusing the loaded dataset."""
    return load_main_target(args, checkpoint=checkpoint, dataset=dataset)
