"""``reslab train MODEL --data NAME ...``: train a model into a run directory (or resume one).

The command is a thin layer over :func:`reslab.train.train`: it turns the recipe, the common
flags and ``--set KEY=VALUE`` into a :class:`~reslab.train.TrainConfig`, trains, and prints a
one-line summary with the test accuracy. Under ``torchrun`` every process runs this command;
rank 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from reslab.data import DATASETS
from reslab.data.segmentation import SEGMENTATION_DATA
from reslab.errors import ConfigError
from reslab.train import (
    apply_overrides,
    list_recipes,
    parse_overrides,
    recipe_description,
    resolve_config,
    train,
)
from reslab.train.config import TrainConfig
from reslab.train.rundir import read_config

# Flags that map straight onto TrainConfig fields (flag dest -> field).
_FLAG_FIELDS = {
    "data": "data", "data_dir": "data_dir", "epochs": "epochs", "iterations": "iterations",
    "batch_size": "batch_size", "lr": "lr", "out": "out", "device": "device", "seed": "seed",
    "save_every": "save_every", "eval_every": "eval_every", "threads": "threads",
}
_BOOL_FLAGS = ("download", "quiet", "tensorboard", "compile", "ema", "channels_last", "bf16", "test_flip")


def register(subparsers) -> None:
    recipes = ", ".join(list_recipes())
    parser = subparsers.add_parser(
        "train", help="train a model on a dataset (recipes, resume, torchrun)",
        description=(
            "Train MODEL on a dataset and write a run directory (config.json, metrics.jsonl/.csv, "
            "checkpoints/). Settings come from a recipe (--recipe; default digits-quick for --data digits, text-char for --data text, "
            f"else cifar10-fast; recipes: {recipes}), then the flags below, then --set KEY=VALUE. "
            "Ctrl-C (SIGINT) or SIGTERM saves a checkpoint; continue with --resume RUN_DIR. "
            "Many processes: torchrun --nproc_per_node N -m reslab train ..."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="model name, e.g. resnet20, plain56, resnet18 (see reslab profile)")
    add_training_flags(parser)
    parser.add_argument("--task", choices=("classify", "segment"), default="classify",
                        help="classify (default), or segment: a U-Net (unet_resnet18, unet_plain18, ...) on images "
                             "with per-pixel masks, --data shapes (default) or segfolder:DIR; see docs/applications.md")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    parser.add_argument("--stop-after", type=int, metavar="EPOCHS",
                        help="save and stop once this many epochs are done (resume later with --resume)")
    parser.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    parser.set_defaults(func=run)


def dataset_names() -> str:
    """The names ``--data`` takes for classification, from the dataset registry (so the help stays true)."""
    return ", ".join(DATASETS)


def segmentation_data_names() -> str:
    """The names ``--data`` takes with ``--task segment``, from the segmentation registry."""
    return ", ".join(f"{name}:DIR" if name == "segfolder" else name for name in SEGMENTATION_DATA)


def add_training_flags(parser, *, data_help: str | None = None) -> None:
    """The flags of every command that trains (``train``, ``finetune``): data, recipe, length, speed, ``--set``."""
    recipes = ", ".join(list_recipes())
    parser.add_argument("--data", help=data_help or f"dataset: {dataset_names()} (default: the recipe's); with "
                                                    f"--task segment: {segmentation_data_names()} (default "
                                                    f"{SEGMENTATION_DATA[0]})")
    parser.add_argument("--data-dir", help="where the dataset's files are (default $RESLAB_DATA, then ./data); for "
                                           "imagefolder the folder of class folders, for text one UTF-8 text file "
                                           "(default: Python's own help topics)")
    parser.add_argument("--download", action="store_true", default=None,
                        help="download CIFAR if its files are missing (never done otherwise)")
    parser.add_argument("--recipe", help=f"recipe name ({recipes}) or a path to a .toml file")
    parser.add_argument("--epochs", type=int, help="epochs to train (replaces the recipe's length)")
    parser.add_argument("--iterations", type=int, help="optimizer steps to train (replaces the recipe's length)")
    parser.add_argument("--batch-size", type=int, help="global batch size (split across processes)")
    parser.add_argument("--lr", type=float, help="peak / initial learning rate")
    parser.add_argument("--out", help="run directory to create (default runs/MODEL-DATA)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    parser.add_argument("--seed", type=int, help="random seed (same seed on CPU: identical weights)")
    parser.add_argument("--save-every", type=int, help="save checkpoints/epoch_K.safetensors every N epochs (0 = never)")
    parser.add_argument("--eval-every", type=int, help="evaluate on the test split every N epochs")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core)")
    for flag in _BOOL_FLAGS:
        helps = {
            "download": None, "quiet": "no progress bar or per-epoch lines, only the final summary",
            "tensorboard": "also write TensorBoard logs to RUN_DIR/tensorboard",
            "compile": "torch.compile the model", "ema": "keep an EMA of the weights and evaluate it too",
            "channels_last": "channels-last memory format", "bf16": "bf16 autocast (CUDA, or a CPU with bf16 units: AVX512-BF16/AMX)",
            "test_flip": "also report test accuracy with test-time flips",
        }
        if flag == "download":
            continue
        parser.add_argument(f"--{flag.replace('_', '-')}", action="store_true", default=None, help=helps[flag])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting, e.g. --set schedule=cosine --set milestones=[40,60] "
                             "--set model_options.shortcut=B (repeatable; see docs/training.md)")


def training_overrides(args) -> dict:
    """The TrainConfig fields the flags of :func:`add_training_flags` set (``--set`` last)."""
    overrides = {}
    for dest, key in _FLAG_FIELDS.items():
        value = getattr(args, dest)
        if value is not None:
            overrides[key] = value
    for flag in _BOOL_FLAGS:
        if getattr(args, flag):
            overrides[flag] = True
    for key, value in parse_overrides(args.settings).items():
        if key in ("model_options", "data_options") and key in overrides:
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return overrides


def run(args) -> int:
    if args.list_recipes:
        for name in list_recipes():
            print(f"{name:16s} {recipe_description(name)}")
        return 0
    from reslab.cli import _train_segment  # noqa: PLC0415 - the segmentation side of this command

    if _train_segment.wants_segmentation(args):
        return _train_segment.run(args)
    _train_segment.check_classify(args)
    overrides = training_overrides(args)
    if args.resume:
        if args.recipe:
            raise ConfigError("--recipe cannot be combined with --resume: a resumed run keeps its settings")
        if overrides.get("out") not in (None, args.resume):
            raise ConfigError("--out cannot be combined with --resume: the run continues in its own directory")
        saved = TrainConfig.from_dict(read_config(args.resume), source=f"{args.resume}/config.json")
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
    return 0
