"""``reslab search MODEL --space KEY=SPEC …``: a hyperparameter search (an Optuna study) whose trials are runs."""

from __future__ import annotations

import sys

from reslab.cli._launch import add_launch_arguments, settings_given
from reslab.settings import add_arguments


def register(subparsers) -> None:
    # Only reslab.experiments.search imports optuna, and only when a search runs: `reslab --help` stays light.
    from reslab.experiments.search import SearchSettings  # noqa: PLC0415 - light: optuna is imported lazily

    parser = subparsers.add_parser(
        "search", help="search training settings (lr, weight decay, depth, …) with Optuna; trials are runs",
        description="An Optuna study whose trials are reslab runs, one run directory each under --out/trials, "
                    "trained through any launcher: asks the sampler for settings, keeps up to --jobs (local) or "
                    "--max-parallel trials in flight, prunes a trial whose metric is worse than the median at "
                    "the same epoch (it stops with a checkpoint) and writes search.json. Resumable: the same "
                    "command continues the study; trials that were running resume from their checkpoints. "
                    "Space: --space lr=loguniform:1e-3:1 --space weight_decay=uniform:0:1e-3 "
                    "--space depth=choice:20,56,110 --space batch_size=int:32:256 (or intlog). "
                    "Needs optuna: pip install 'reslab[search]'.",
    )
    parser.add_argument("model", metavar="MODEL", help="the model (with --space depth=…, its family: resnet20 → "
                                                       "resnet56)")
    add_arguments(parser, SearchSettings, include=["data", "data_dir", "recipe"])
    parser.add_argument("--space", dest="space_items", action="append", default=[], metavar="KEY=SPEC",
                        help="a dimension of the search: loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH, "
                             "intlog:LOW:HIGH or choice:A,B,C (e.g. lr=loguniform:1e-3:1, depth=choice:20,56,110); "
                             "repeatable")
    add_arguments(parser, SearchSettings, include=["space_file", "trials", "sampler", "pruner", "metric", "direction",
                                                   "seed", "storage", "study_name", "epochs", "startup_trials",
                                                   "prune_startup", "prune_warmup"])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any training setting, the same for every trial (e.g. --set seed=1 --set "
                             "batch_size=64); repeatable")
    add_arguments(parser, SearchSettings, include=["jobs", "out", "quiet"])
    add_launch_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from reslab.experiments.search import SearchSettings, parse_space, run_search  # noqa: PLC0415
    from reslab.train import parse_overrides  # noqa: PLC0415

    space = {key: param.spec for key, param in parse_space(args.space_items).items()}
    values = settings_given(args, SearchSettings)
    try:
        result = run_search(settings=values, model=args.model, space=space, overrides=parse_overrides(args.settings))
    except KeyboardInterrupt:
        print("reslab search: interrupted; run the same command again to continue the study", file=sys.stderr)
        return 130
    if not result.complete:
        print("reslab search: stopped before the study had its trials; run the same command again to continue",
              file=sys.stderr)
        return 130
    print(result.table())
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0
