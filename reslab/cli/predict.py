"""``reslab predict CHECKPOINT_OR_RUN_DIR IMAGE_OR_FOLDER...``: top-k classes of image files.

``reslab predict MODEL --checkpoint FILE IMAGES [--data NAME | --mean ... --std ...]`` classifies
with a state-dict file from anywhere (class names from --data, else the class indices).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from reslab.cli._weights import CHECKPOINT_HELP, add_weights_arguments, load_weights_source
from reslab.errors import ConfigError
from reslab.store import check_output_file
from reslab.store.jsonfiles import json_ready
from reslab.train import predict
from reslab.train.loading import names_run_checkpoint
from reslab.utils import atomic_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify PNG/JPEG images (files or folders of them) with a trained run",
        description="Read each image exactly as image folders are read for training (16-bit scaled to 8 bits, "
                    "transparency composited over black), convert it to the run's channels, resize it to the "
                    "run's image size (each conversion is printed), and print the top-k classes with their "
                    "probabilities. A folder stands for every PNG/JPEG file in it.",
    )
    parser.add_argument("source", metavar="CHECKPOINT_OR_RUN_DIR")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    parser.add_argument("--fast", action="store_true",
                        help="classify with the fastest inference path that passed its check in `reslab bench infer "
                             "RUN` for these very weights (RUN/inference.json records their fingerprint), among the "
                             "paths that load ready to run (all but compile and int8-pt2e); an ONNX Runtime path's "
                             "file is kept in RUN/inference/ and loaded by later calls. Without such a record (none, "
                             "or one of other weights: trained further since, another checkpoint) BN folding + "
                             "channels-last, which is exact, and the bench infer command that measures these weights")
    parser.add_argument("--data-dir", metavar="DIR", help="where the run's dataset is, when not where it was trained "
                                                          "(--fast calibrates an int8 path on its training images)")
    parser.add_argument("--data", metavar="NAME",
                        help="for MODEL --checkpoint FILE: the dataset the weights classify (its class names, image "
                             "size and, without --mean/--std, its training statistics; default: class indices)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON lines (on stdout, as "
                                                            "every reslab command's --json)")
    parser.add_argument("--csv", metavar="FILE", help="also write the table to FILE (image, rank, class, probability, "
                                                      "conversions); an existing FILE only with --force")
    parser.add_argument("--force", action="store_true", help="replace an existing --csv FILE")
    add_weights_arguments(parser)
    parser.set_defaults(func=run)


def _load(args):
    """The weights to classify with: a run, or MODEL --checkpoint FILE (with --data's classes, if given)."""
    if Path(args.source).exists():
        if args.data:
            raise ConfigError(f"--data is for MODEL --checkpoint FILE; the run {args.source} classifies its own "
                              "classes (--data-dir says where its data is)")
        run_ = load_weights_source(args, args.source)
        if args.data_dir:
            import dataclasses  # noqa: PLC0415

            run_ = dataclasses.replace(run_, config={**run_.config, "data_dir": args.data_dir})
        return run_
    if not names_run_checkpoint(args.checkpoint) and args.data is None and args.mean is None:
        raise ConfigError(f"the input normalisation of {args.checkpoint} is unknown: give the mean and std its weights "
                          "were trained with (--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 are ImageNet's) or "
                          "--data, whose training statistics are then used")
    dataset = None
    if args.data:
        from reslab.data import load_dataset  # noqa: PLC0415

        dataset = load_dataset(args.data, data_dir=args.data_dir)
    return load_weights_source(args, args.source, dataset)


def _fast(run_):
    """The run with its model replaced by the fastest checked inference path."""
    import dataclasses  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from reslab.applications.inference import fast_model  # noqa: PLC0415
    from reslab.data import normalize  # noqa: PLC0415

    h, w = run_.image_size
    example = torch.zeros(16, int(run_.config["in_chans"]), h, w)
    calibration = lambda: normalize(run_.dataset.train_images[:256], run_.mean, run_.std).float()  # noqa: E731
    say = lambda message: print(f"reslab predict: {message}", file=sys.stderr)  # noqa: E731
    model = fast_model(run_.model, run_.run_dir, calibration, example, say, checkpoint=_checkpoint_name(run_))
    return dataclasses.replace(run_, model=model)


def _checkpoint_name(run_) -> str:
    """The --checkpoint that names the weights loaded (what `reslab bench infer RUN --checkpoint` takes)."""
    stem = run_.checkpoint.stem
    if stem.startswith("epoch_") and stem[len("epoch_"):].isdigit():
        return f"epoch_{int(stem[len('epoch_'):])}"
    return stem if stem in ("last", "init", "ema") else str(run_.checkpoint)


def _check_outputs(args) -> None:
    """Refuse an output that cannot be written, before any model is loaded."""
    if args.csv:
        check_output_file(args.csv, "--csv", force=args.force, example="predictions.csv")


def run(args) -> int:
    _check_outputs(args)
    run_ = _load(args)
    if args.fast:
        run_ = _fast(run_)
    predictions = predict(run_, args.images, top_k=args.top_k)
    size = "x".join(map(str, run_.image_size))
    for prediction in predictions:
        if args.json:
            print(json.dumps(json_ready({"image": prediction.source, "converted": prediction.notes,
                                         "top": [{"index": i, "class": name, "probability": p}
                                                 for i, name, p in prediction.top]})))
        else:
            ranked = ", ".join(f"{name} {100 * p:.1f}%" for _, name, p in prediction.top)
            converted = f"  [{'; '.join(prediction.notes)}]" if prediction.notes else ""
            print(f"{prediction.source}: {ranked}{converted}")
    if any(p.notes for p in predictions) and not args.json:
        print(f"(the model takes {run_.config['in_chans']}-channel {size} images; the conversions are in brackets)",
              file=sys.stderr)
    if args.csv:
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "rank", "class_index", "class", "probability", "conversions"])
            for prediction in predictions:
                for rank, (index, name, probability) in enumerate(prediction.top, start=1):
                    writer.writerow([prediction.source, rank, index, name, f"{probability:.6f}",
                                     "; ".join(prediction.notes)])
        # stdout holds only JSON lines under --json
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)
    return 0
