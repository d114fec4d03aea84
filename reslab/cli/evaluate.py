"""``reslab eval CHECKPOINT_OR_RUN_DIR``: loss, error and accuracy of a trained model on a dataset.

Each task has its measures: a classifier's accuracy, error and loss; a segmenter's (U-Net) loss
per pixel, pixel accuracy and mean IoU; a language model's loss in nats and bits per character.

``reslab eval MODEL --checkpoint FILE --data NAME`` evaluates a state-dict file from anywhere
(torchvision, timm, public CIFAR ResNet code) the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from reslab.cli._weights import CHECKPOINT_HELP, add_weights_arguments, load_weights_source
from reslab.data import load_dataset
from reslab.errors import ConfigError
from reslab.models import create_model
from reslab.store.jsonfiles import json_ready
from reslab.store.rundir import TASK_LANGUAGE_MODEL, TASK_SEGMENT
from reslab.train import evaluate
from reslab.train.loading import check_data_fits, load_data_named, names_run_checkpoint, text_in_vocabulary
from reslab.utils import resolve_device


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run or checkpoint on a dataset",
        description="Evaluate a run directory (or a checkpoints/*.safetensors file inside one) on the test "
                    "split of its own dataset, or of --data NAME (same classes and channels); or a model name with "
                    "the weights of a state-dict file (MODEL --checkpoint FILE --data NAME).",
    )
    parser.add_argument("source", metavar="CHECKPOINT_OR_RUN_DIR",
                        help="a run directory or checkpoint; a model name (e.g. resnet20) with --checkpoint FILE or "
                             "--pretrained")
    parser.add_argument("--pretrained", metavar="TAG",
                        help="evaluate the weights that ship with reslab for the model SOURCE, e.g. "
                             "reslab eval resnet20 --pretrained cifar10 (see reslab profile --pretrained)")
    parser.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    parser.add_argument("--data", help="dataset name (default: the run's; required with MODEL --checkpoint FILE)")
    parser.add_argument("--data-dir", help="where the dataset files are (default: the run's, then $RESLAB_DATA, ./data)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_weights_arguments(parser)
    parser.set_defaults(func=run)


def _load(args):
    """(the weights as a LoadedRun, the dataset to evaluate on): a run, or MODEL --checkpoint FILE."""
    if not Path(args.source).exists():
        if names_run_checkpoint(args.checkpoint):
            load_weights_source(args, args.source)  # a model name without a file: it says what to give
        if args.data is None:
            raise ConfigError(f"{args.source} --checkpoint {args.checkpoint}: give the data to evaluate on with --data "
                              "(e.g. --data cifar10 --data-dir ../shared/data)")
        dataset = load_dataset(args.data, data_dir=args.data_dir)
        return load_weights_source(args, args.source, dataset), dataset
    run_ = load_weights_source(args, args.source)
    config = run_.config
    if args.data is None and args.data_dir is None:
        return run_, run_.dataset
    name = args.data or config["data"]
    options = dict(config.get("data_options") or {}) if name == config["data"] else {}
    dataset = load_data_named(name, data_dir=args.data_dir or (config.get("data_dir") if name == config["data"]
                                                                else None), **options)
    check_data_fits(config, dataset, f"the model of {args.source}")
    if run_.task == TASK_LANGUAGE_MODEL:
        dataset = text_in_vocabulary(dataset, run_.class_names)
    return run_, dataset


def run(args) -> int:
    if args.pretrained:
        return _run_pretrained(args)
    run_, dataset = _load(args)
    if run_.task == TASK_SEGMENT:
        return _run_segmentation(args, run_, dataset)
    if run_.task == TASK_LANGUAGE_MODEL:
        return _run_language_model(args, run_, dataset)
    config = run_.config
    images = getattr(dataset, f"{args.split}_images")
    labels = getattr(dataset, f"{args.split}_labels")
    # Normalise with the statistics the model was trained with, whatever the data.
    result = evaluate(run_.model, images, labels, split=args.split, batch_size=args.batch_size,
                      device=resolve_device(args.device), mean=run_.mean, std=run_.std)
    if args.json:
        weights = {key: config.get(key) for key in ("model_options", "weights_file", "mean", "std", "normalization")
                   } if config.get("weights_file") else {}
        print(json.dumps(json_ready({"task": run_.task, **result.to_dict(), "model": config["model"],
                                     "checkpoint": str(run_.checkpoint),
                                     "data": dataset.name, **weights})))
    else:
        print(f"{config['model']} [{run_.checkpoint}] on {dataset.name} {args.split} ({result.count} images): "
              f"accuracy {100 * result.accuracy:.2f}%, error {100 * result.error:.2f}%, loss {result.loss:.4f}")
    return 0


def _run_segmentation(args, run_, dataset) -> int:
    """Loss per pixel, pixel accuracy and mean IoU of a U-Net run on a split of segmentation data."""
    from reslab.tasks.segment import evaluate_segmentation  # noqa: PLC0415 - only segmentation runs need it

    images, masks = getattr(dataset, f"{args.split}_images"), getattr(dataset, f"{args.split}_masks")
    if images.shape[0] == 0:
        raise ConfigError(f"the {args.split} split of {dataset.name!r} has no images to evaluate; use --split "
                          f"{'train' if args.split == 'test' else 'test'}")
    device = resolve_device(args.device)
    scores = evaluate_segmentation(run_.model.to(device), images, masks, run_.mean, run_.std, dataset.num_classes,
                                   batch_size=args.batch_size, device=device)
    names = run_.class_names
    iou = dict(zip(names, scores.iou))
    pixels = int(scores.confusion.sum())
    if args.json:
        print(json.dumps(json_ready({
            "task": run_.task, "loss": scores.loss, "pixel_accuracy": scores.pixel_accuracy, "miou": scores.miou,
            "iou": iou, "count": int(images.shape[0]), "pixels": pixels, "split": args.split,
            "model": run_.config["model"], "checkpoint": str(run_.checkpoint), "data": dataset.name})))
        return 0
    per_class = ", ".join(f"{name} {'–' if v is None else f'{100 * v:.1f}%'}" for name, v in iou.items())
    print(f"{run_.config['model']} [{run_.checkpoint}] on {dataset.name} {args.split} ({images.shape[0]} images, "
          f"{pixels} pixels): mIoU {100 * scores.miou:.2f}%, pixel accuracy {100 * scores.pixel_accuracy:.2f}%, "
          f"loss {scores.loss:.4f} per pixel")
    print(f"IoU per class: {per_class}")
    return 0


def _run_language_model(args, run_, dataset) -> int:
    """Loss per character (nats and bits) and next-character accuracy of a language model on its
    text's consecutive windows, as the trainer measures validation."""
    from reslab.data.text import SequenceLoader  # noqa: PLC0415 - only language models need it
    from reslab.train.evaluation import eval_sums, result_from_sums  # noqa: PLC0415

    split = "validation" if args.split == "test" else "train"
    tokens = getattr(dataset, f"{args.split}_tokens")
    if tokens.numel() < dataset.context + 1:
        raise ConfigError(f"the {split} text of {dataset.name!r} has {tokens.numel()} characters, fewer than one "
                          f"window of {dataset.context} + 1; use a longer text")
    device = resolve_device(args.device)
    model = run_.model.to(device)
    loader = SequenceLoader(tokens, args.batch_size, dataset.context, device=device, train=False)
    result = result_from_sums(eval_sums(model, loader).cpu(), args.split)
    bits = result.loss / math.log(2)
    if args.json:
        print(json.dumps(json_ready({
            "task": run_.task, "loss": result.loss, "bits_per_char": bits, "accuracy": result.accuracy,
            "error": result.error, "count": result.count, "split": split, "context": dataset.context,
            "model": run_.config["model"], "checkpoint": str(run_.checkpoint), "data": dataset.name})))
        return 0
    print(f"{run_.config['model']} [{run_.checkpoint}] on {dataset.name} {split} ({result.count} characters, windows "
          f"of {dataset.context}): loss {result.loss:.4f} nats/char ({bits:.4f} bits/char), next-character "
          f"accuracy {100 * result.accuracy:.2f}%")
    return 0


def _run_pretrained(args) -> int:
    model = create_model(args.source, pretrained=args.pretrained)
    record = model.pretrained_cfg["record"]
    name = args.data or record["data"]
    dataset = load_dataset(name, data_dir=args.data_dir)
    check_data_fits(record, dataset, f"{args.source} pretrained={args.pretrained!r}")
    images = getattr(dataset, f"{args.split}_images")
    labels = getattr(dataset, f"{args.split}_labels")
    result = evaluate(model, images, labels, split=args.split, batch_size=args.batch_size,
                      device=resolve_device(args.device), mean=record["mean"], std=record["std"])
    source = f"pretrained={args.pretrained!r}"
    if args.json:
        print(json.dumps(json_ready({**result.to_dict(), "model": args.source, "pretrained": args.pretrained,
                                     "recorded_test_accuracy": record.get("test_accuracy"), "data": dataset.name})))
    else:
        print(f"{args.source} [{source}] on {dataset.name} {args.split} ({result.count} images): "
              f"accuracy {100 * result.accuracy:.2f}%, error {100 * result.error:.2f}%, loss {result.loss:.4f} "
              f"(recorded when shipped: {100 * record['test_accuracy']:.2f}% test accuracy)")
    return 0
