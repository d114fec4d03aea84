"""``reslab train MODEL --data NAME ...``: train a model into a run directory (or resume one).

The command is a thin layer over :func:`reslab.train.train`: it turns the recipe, one flag per
engine setting (from :class:`~reslab.train.TrainConfig`), the option tables and ``--set KEY=VALUE``
into settings, trains whatever the task (classify, segment, language-model), and prints a one-line
summary of the test numbers. Under ``torchrun`` every process runs this command;
rank 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from reslab.data import DATASETS
from reslab.data.segmentation import SEGMENTATION_DATA
from reslab.errors import ConfigError
from reslab.settings import add_arguments, parse_key_values
from reslab.tasks import task_names
from reslab.train import (
    apply_overrides,
    list_recipes,
    parse_overrides,
    recipe_description,
    resolve_config,
    train,
)
from reslab.train.config import TABLES, TrainConfig
from reslab.store.rundir import config_task
from reslab.train.rundir import read_config


def register(subparsers) -> None:
    recipes = ", ".join(list_recipes())
    parser = subparsers.add_parser(
        "train", help="train a model on a dataset: classify, segment, language-model (recipes, resume, torchrun)",
        description=(
            "Train MODEL on a dataset and write a run directory (config.json, metrics.jsonl/.csv, "
            "checkpoints/). The task is chosen from the model and the data: a U-Net on segmentation data "
            "segments, a sequence model on text is a language model, the rest classifies (--task where it is "
            "ambiguous). Settings come from a recipe (--recipe; default: the task's — digits-quick for --data "
            f"digits, text-char for text, shapes-unet for segmentation, else cifar10-fast; recipes: {recipes}), "
            "then the flags below, then --set KEY=VALUE. "
            "Ctrl-C (SIGINT) or SIGTERM saves a checkpoint; continue with --resume RUN_DIR. "
            "Many processes: torchrun --nproc_per_node N -m reslab train ..."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="model name, e.g. resnet20, plain56, resnet18, unet_resnet20, "
                                                 "transformer4 (see reslab profile)")
    add_training_flags(parser)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    parser.add_argument("--stop-after", type=int, metavar="EPOCHS",
                        help="save and stop once this many epochs are done (resume later with --resume)")
    parser.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    parser.set_defaults(func=run)


def dataset_names() -> str:
    """The names ``--data`` takes for classification, from the dataset registry (so the help stays true)."""
    return ", ".join(DATASETS)


def segmentation_data_names() -> str:
    """The names ``--data`` takes for segmentation, from the segmentation registry."""
    return ", ".join(f"{name}:DIR" if name == "segfolder" else name for name in SEGMENTATION_DATA)


def add_training_flags(parser, *, data_help: str | None = None) -> None:
    """The flags of every command that trains (``train``, ``finetune``): one per engine setting
    (:class:`~reslab.train.TrainConfig`), the recipe, the option tables and ``--set``."""
    recipes = ", ".join(list_recipes())
    parser.add_argument("--recipe", help=f"recipe name ({recipes}) or a path to a .toml file")
    add_arguments(parser, TrainConfig, unset="the recipe's", helps={
        "data": data_help or f"dataset: {dataset_names()}; for segmentation {segmentation_data_names()}",
        "task": f"what the run learns: {', '.join(task_names())} (default: chosen from the model and the data; "
                "needed only where more than one would fit)"})
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the model, e.g. --model-option shortcut=B (repeatable)")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the data, e.g. --data-option num_train=256 (repeatable; see docs/data.md)")
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the task, e.g. --task-option vflip=true for segment (repeatable)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting, e.g. --set schedule=cosine --set milestones=[40,60] "
                             "--set model_options.shortcut=B (repeatable; see docs/training.md)")


def training_overrides(args) -> dict:
    """The settings the flags of :func:`add_training_flags` set: each flag given, then the option
    tables, then ``--set`` (a later one wins; tables are merged)."""
    # Only flags given are in the namespace (``unset``); MODEL is the positional argument, not a flag.
    overrides = {name: getattr(args, name) for name in TrainConfig.field_names()
                 if name not in ("model", "recipe") and getattr(args, name, None) is not None}
    for flag, table in (("model_option", "model_options"), ("data_option", "data_options"),
                        ("task_option", "task_options")):
        values = parse_key_values(getattr(args, flag, None), "--" + flag.replace("_", "-"))
        if values:
            overrides[table] = values
    for key, value in parse_overrides(args.settings).items():
        if key in TABLES and key in overrides:
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return overrides


def run(args) -> int:
    if args.list_recipes:
        for name in list_recipes():
            print(f"{name:16s} {recipe_description(name)}")
        return 0
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError(f"--stop-after {args.stop_after}: give the number of epochs (of the whole run) after which "
                          "to save and stop, 1 or more")
    overrides = training_overrides(args)
    if args.resume:
        if args.recipe:
            raise ConfigError("--recipe cannot be combined with --resume: a resumed run keeps its settings")
        if overrides.get("out") not in (None, args.resume):
            raise ConfigError("--out cannot be combined with --resume: the run continues in its own directory")
        saved_config = read_config(args.resume)
        if "format" not in saved_config and config_task(saved_config) == "segment":
            return finish(train(resume=args.resume))  # the trainer says why such a run cannot resume
        saved = TrainConfig.from_dict(saved_config, source=f"{args.resume}/config.json")
        if args.model and args.model != saved.model:
            raise ConfigError(f"--resume {args.resume} holds a {saved.model} run, not {args.model}")
        config = apply_overrides(saved, overrides)
        result = train(config, resume=args.resume, stop_after_epoch=args.stop_after)
    else:
        if not args.model:
            raise ConfigError("give the MODEL to train (e.g. reslab train resnet20 --data digits), or --resume RUN_DIR")
        data = overrides.pop("data", None)
        config = resolve_config(args.recipe, model=args.model, data=data, overrides=overrides)
        result = train(config, stop_after_epoch=args.stop_after)
    return finish(result)


def finish(result) -> int:
    """Print the run's summary (rank 0); the exit status, with how to continue a stopped run."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.summary(), flush=True)
    if result.stopped_by == "SIGINT":
        print(f"reslab train: interrupted; continue with: reslab train --resume {result.run_dir}", file=sys.stderr)
        return 130
    if result.stopped_by == "SIGTERM":
        print(f"reslab train: terminated; continue with: reslab train --resume {result.run_dir}", file=sys.stderr)
        return 143
    if result.stopped_by == "stop_after_epoch" and int(os.environ.get("RANK", "0")) == 0:
        print(f"reslab train: stopped after epoch {result.epoch} as asked (--stop-after); continue with: "
              f"reslab train --resume {result.run_dir}", file=sys.stderr)
    return 0
