"""``reslab eval CHECKPOINT_OR_RUN_DIR``: loss, error and accuracy of a trained model on a dataset."""

from __future__ import annotations

import json

from reslab.data import load_dataset
from reslab.models import create_model
from reslab.train import evaluate, load_run
from reslab.train.loading import check_data_fits
from reslab.utils import resolve_device


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run or checkpoint on a dataset",
        description="Evaluate a run directory (or a checkpoints/*.safetensors file inside one) on the test "
                    "split of its own dataset, or of --data NAME (same classes and channels).",
    )
    parser.add_argument("source", metavar="CHECKPOINT_OR_RUN_DIR",
                        help="a run directory or checkpoint; with --pretrained, a model name (e.g. resnet20)")
    parser.add_argument("--pretrained", metavar="TAG",
                        help="evaluate the weights that ship with reslab for the model SOURCE, e.g. "
                             "reslab eval resnet20 --pretrained cifar10 (see reslab profile --pretrained)")
    parser.add_argument("--checkpoint", default="last", help="last (default), init, ema, epoch_K, or a .safetensors path")
    parser.add_argument("--data", help="dataset name (default: the run's)")
    parser.add_argument("--data-dir", help="where the dataset files are (default: the run's, then $RESLAB_DATA, ./data)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.pretrained:
        return _run_pretrained(args)
    run_ = load_run(args.source, args.checkpoint)
    config = run_.config
    if args.data is None and args.data_dir is None:
        dataset = run_.dataset
    else:
        name = args.data or config["data"]
        options = dict(config.get("data_options") or {}) if name == config["data"] else {}
        dataset = load_dataset(name, data_dir=args.data_dir or (config.get("data_dir") if name == config["data"] else None),
                               **options)
    check_data_fits(config, dataset, f"the model of {args.source}")
    images = getattr(dataset, f"{args.split}_images")
    labels = getattr(dataset, f"{args.split}_labels")
    # Normalise with the statistics the model was trained with, whatever the data.
    result = evaluate(run_.model, images, labels, split=args.split, batch_size=args.batch_size,
                      device=resolve_device(args.device), mean=run_.mean, std=run_.std)
    if args.json:
        print(json.dumps({**result.to_dict(), "model": config["model"], "checkpoint": str(run_.checkpoint),
                          "data": dataset.name}))
    else:
        print(f"{config['model']} [{run_.checkpoint}] on {dataset.name} {args.split} ({result.count} images): "
              f"accuracy {100 * result.accuracy:.2f}%, error {100 * result.error:.2f}%, loss {result.loss:.4f}")
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
        print(json.dumps({**result.to_dict(), "model": args.source, "pretrained": args.pretrained,
                          "recorded_test_accuracy": record.get("test_accuracy"), "data": dataset.name}))
    else:
        print(f"{args.source} [{source}] on {dataset.name} {args.split} ({result.count} images): "
              f"accuracy {100 * result.accuracy:.2f}%, error {100 * result.error:.2f}%, loss {result.loss:.4f} "
              f"(recorded when shipped: {100 * record['test_accuracy']:.2f}% test accuracy)")
    return 0
