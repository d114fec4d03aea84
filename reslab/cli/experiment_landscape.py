"""``reslab experiment landscape``: residual vs plain loss surfaces and curvature (Li et al. 2018)."""

from __future__ import annotations

from reslab.cli.experiment import finish
from reslab.experiments.landscape import (
    LandscapeExperimentSettings,
    default_budget,
    run_landscape_experiment,
)
from reslab.cli._launch import add_launch_arguments, settings_given
from reslab.settings import add_arguments
from reslab.train import parse_overrides

GROUPS = {
    None: ("models", "data", "data_dir", "download"),
    "training": ("recipe", "epochs", "seed", "jobs", "reuse"),
    "landscape": ("grid", "samples", "split", "direction_seed", "planes", "precision", "workers"),
    "curvature": ("hessian", "hessian_samples", "top_k", "hessian_iterations", "extreme_steps", "trace_probes"),
    "where": ("device", "threads", "out", "quiet"),
}


def register(subparsers) -> None:
    digits, other = default_budget("digits"), default_budget("other")
    parser = subparsers.add_parser(
        "landscape", help="train (or reuse) residual and plain twins; compare their loss surfaces and curvature",
        description="Train the models with the same recipe and seed (saving every epoch), or reuse finished runs "
                    "(--reuse), one run directory each under --out; then, with the same directions and samples "
                    "for all models, compute the random filter-normalised 2-D loss surface, optionally the PCA "
                    "plane of the training trajectory and the init → last line, and the Hessian summary (λmax, "
                    "λmin, |λmin/λmax|, trace). Writes landscape.json and side-by-side PNGs on one colour scale; "
                    "`reslab report OUT` shows them. Resumable: the same command again skips finished runs and "
                    "grids and continues partial ones.",
        epilog=f"Default budgets — digits: grid {digits.grid}, {digits.samples} images, Hessian on "
               f"{digits.hessian.samples} images with {digits.hessian.trace_probes} trace probes (a few minutes on "
               f"2 CPU cores); other data: grid {other.grid}, {other.samples} images, Hessian on "
               f"{other.hessian.samples} with {other.hessian.trace_probes} probes. The paper's setting on a GPU: "
               "--grid=-1:1:51 --samples 10000.",
    )
    # What the dataset's budget decides, shown as the default in --help.
    by_data = {
        "grid": f"{digits.grid} for the digits, {other.grid} otherwise",
        "samples": f"{digits.samples} digits, {other.samples} otherwise",
        "hessian_samples": f"{digits.hessian.samples}",
        "top_k": f"{digits.hessian.top_k}",
        "hessian_iterations": f"{digits.hessian.max_iterations}",
        "extreme_steps": f"{digits.hessian.extreme_steps}",
        "trace_probes": f"{digits.hessian.trace_probes} digits, {other.hessian.trace_probes} otherwise",
        "out": "runs/landscape-DATA",
        "workers": "the CPU cores",
        "threads": "torch's choice",
    }
    for title, names in GROUPS.items():
        group = parser.add_argument_group(title) if title else parser
        add_arguments(group, LandscapeExperimentSettings, include=names, defaults=by_data)
        if title == "training":
            group.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                               help="any training setting, the same for every run (e.g. --set lr=0.1); repeatable")
    add_launch_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    return finish("landscape", lambda: run_landscape_experiment(
        settings=settings_given(args, LandscapeExperimentSettings), overrides=parse_overrides(args.settings)),
        lambda result: f"report: reslab report {result.experiment_dir} -o {result.experiment_dir / 'report.html'}")
