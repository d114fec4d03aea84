"""``reslab finetune SOURCE --data ...``: start a new run from another network's weights, with a new head.

    reslab finetune runs/r20 --data cifar10 --data-dir ../shared/data --classes dog,frog --per-class 100
    reslab finetune resnet18-f37072fd.pth --model resnet18 --data imagefolder --data-dir flowers/ \\
        --freeze stem,layer1 --head-lr 0.1 --lr 0.01 --epochs 10

SOURCE is a reslab run, a reslab checkpoint, or a torchvision/timm state-dict file on local disk
(``.pth``/``.safetensors``; nothing is downloaded). Every tensor but the classifier is copied; a
source of another architecture is refused, naming the first tensor that differs and both shapes.
The new run's config records where its weights came from (``init_from`` and ``transfer``) and its
class names. Resume an interrupted fine-tuning with ``reslab train --resume RUN_DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reslab.cli.train import add_training_flags, dataset_names, finish, training_overrides
from reslab.data.segmentation import is_segmentation_data
from reslab.errors import ConfigError
from reslab.store.rundir import TASK_LANGUAGE_MODEL, TASK_SEGMENT
from reslab.train import finetune_config, train
from reslab.train.loading import source_task


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a run, checkpoint or torchvision/timm weights file on new data",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " " + __doc__.split("\n\n")[2].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="a reslab run directory, a checkpoint (RUN/checkpoints/*.safetensors) or a state-dict file "
                             "(.pth, .pt, .pth.tar, .th, .bin, .safetensors)")
    parser.add_argument("--model", help="architecture of SOURCE (needed for a bare state-dict file; default: the run's)")
    parser.add_argument("--classes", help="keep only these classes of --data, at least 2, comma-separated names or "
                                          "indices (labels become 0..k-1 in this order)")
    parser.add_argument("--per-class", type=int, metavar="N", help="at most N training images of each class")
    parser.add_argument("--freeze", metavar="MODULES", nargs="+",
                        help="modules kept fixed, comma- or space-separated: stem, layer1, layer2, ... or a block such as "
                             "layer1.0 (e.g. --freeze stem,layer1; their BN layers keep the source's statistics)")
    parser.add_argument("--freeze-bn", action="store_true", default=None,
                        help="every BN layer keeps the source's statistics and affine parameters")
    parser.add_argument("--head-lr", type=float, help="peak learning rate of the new head (default: --lr)")
    add_training_flags(parser, data_help=f"dataset to fine-tune on (required): {dataset_names()}")
    parser.set_defaults(func=run)


def _refuse_other_tasks(args: argparse.Namespace) -> None:
    """Fine-tuning puts a new classifier head on a classifier; a U-Net or a language model has none."""
    task = source_task(args.source)
    run_dir = args.source if Path(args.source).is_dir() else str(Path(args.source).parent.parent)
    if task == TASK_SEGMENT:
        raise ConfigError(f"{args.source} is a segmenter (U-Net); reslab finetune fine-tunes classifiers: continue "
                          f"training it with reslab train --resume {run_dir} --epochs N, or start a U-Net from "
                          "a classifier's encoder with reslab train unet_ENCODER --data shapes")
    if task == TASK_LANGUAGE_MODEL:
        raise ConfigError(f"{args.source} is a language model; reslab finetune fine-tunes classifiers: continue "
                          f"training it with reslab train --resume {run_dir} --epochs N")
    data = getattr(args, "data", None)
    if data and is_segmentation_data(data):
        raise ConfigError(f"--data {data} is segmentation data; reslab finetune fine-tunes classifiers: train a "
                          f"U-Net on it with reslab train unet_ENCODER --data {data}")
    if data and data.partition(":")[0] == "text":
        raise ConfigError(f"--data {data} is text; reslab finetune fine-tunes classifiers: train a language "
                          f"model on it with reslab train transformer4 --data {data}")


def run(args: argparse.Namespace) -> int:
    _refuse_other_tasks(args)
    if not getattr(args, "data", None):
        raise ConfigError("give the data to fine-tune on with --data (e.g. --data cifar10 --data-dir ../shared/data, "
                          "or --data imagefolder --data-dir DIR)")
    overrides = training_overrides(args)
    data = overrides.pop("data")
    subset = {}
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if len(classes) < 2:
            # An empty list would mean every class; one class makes a head whose loss is 0 from the start.
            raise ConfigError(f"--classes {args.classes!r} names {len(classes)} class(es); a classifier needs at least "
                              "2: give 2 or more names or indices, comma-separated (e.g. --classes dog,frog), or "
                              "leave --classes out to keep every class")
        subset["classes"] = classes
    if args.per_class is not None:
        subset["per_class"] = args.per_class
    if subset:
        overrides["data_options"] = {**overrides.get("data_options", {}), **subset}
    if args.freeze is not None:
        # The syntax of `reslab experiment transfer --freeze`: commas, and spaces too.
        overrides["freeze"] = " ".join(args.freeze).replace(",", " ").split()
        if not overrides["freeze"]:
            raise ConfigError(f"--freeze {' '.join(args.freeze)!r} names no module; give module names, comma-separated "
                              "(e.g. --freeze stem,layer1), or leave --freeze out to train every layer")
    if args.freeze_bn:
        overrides["freeze_bn"] = True
    if args.head_lr is not None:
        overrides["head_lr"] = args.head_lr
    config = finetune_config(args.source, data=data, recipe=args.recipe, model=args.model, overrides=overrides)
    return finish(train(config))
