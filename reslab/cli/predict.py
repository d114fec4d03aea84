"""``reslab predict CHECKPOINT_OR_RUN_DIR IMAGE...``: top-k classes of image files."""

from __future__ import annotations

import json

from reslab.train import load_run, predict


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify PNG/JPEG images with a trained run",
        description="Decode each image (PNG/JPEG), convert it to the run's channels, resize it to the run's "
                    "image size, and print the top-k classes with their probabilities.",
    )
    parser.add_argument("source", metavar="CHECKPOINT_OR_RUN_DIR")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--checkpoint", default="last", help="last (default), init, ema, epoch_K, or a .safetensors path")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON lines")
    parser.set_defaults(func=run)


def run(args) -> int:

    run_ = load_run(args.source, args.checkpoint)
    for prediction in predict(run_, args.images, top_k=args.top_k):
        if args.json:
            print(json.dumps({"image": prediction.source,
                              "top": [{"index": i, "class": name, "probability": p} for i, name, p in prediction.top]}))
        else:
            ranked = ", ".join(f"{name} {100 * p:.1f}%" for _, name, p in prediction.top)
            print(f"{prediction.source}: {ranked}")
    return 0
