"""``reslab predict CHECKPOINT_OR_RUN_DIR IMAGE_OR_FOLDER...``: top-k classes of image files.

What a run predicts follows its task: a classifier the top-k classes, a segmenter (U-Net) a mask
per image (``--masks DIR``) and the share of each class, a language model the continuation of
each prompt given in place of the images (``reslab predict RUN "def " --chars 200``).

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
from reslab.store.rundir import TASK_CLASSIFY, TASK_LANGUAGE_MODEL, TASK_SEGMENT
from reslab.train import predict
from reslab.train.loading import TASK_NOUNS, names_run_checkpoint, source_task
from reslab.utils import atomic_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict with a trained run: classes of images, masks of a U-Net, continuations of a language model",
        description="Read each image exactly as image folders are read for training (16-bit scaled to 8 bits, "
                    "transparency composited over black), convert it to the run's channels, resize it to the "
                    "run's image size (each conversion is printed), and print the top-k classes with their "
                    "probabilities. A folder stands for every PNG/JPEG file in it.",
    )
    parser.add_argument("source", metavar="CHECKPOINT_OR_RUN_DIR")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files or folders of them; for a language-model run, the prompts to continue")
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
    parser.add_argument("--force", action="store_true", help="replace an existing --csv FILE (or masks in --masks DIR)")
    segment = parser.add_argument_group("segmentation runs")
    segment.add_argument("--masks", metavar="DIR",
                         help="write each image's mask to DIR/STEM.png, at the image's size: a palette PNG whose "
                              "pixel values are the class indices (what segfolder reads as masks); existing files "
                              "only with --force. Without it only the class shares are printed")
    text = parser.add_argument_group("language-model runs")
    text.add_argument("--chars", type=int, default=None, metavar="N", help="characters to write after each prompt "
                                                                            "(default 200)")
    text.add_argument("--temperature", type=float, default=None, metavar="T",
                      help="0 (default): the most probable character each time; above 0: sample (0.8 is usual)")
    text.add_argument("--seed", type=int, default=None, help="seed of the sampling (default 0)")
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


def _refuse_other_task_flags(args, task: str | None) -> None:
    """One line for a flag of another task's prediction (a mask folder for a classifier, ...)."""
    flags = {"--masks": (args.masks is not None, TASK_SEGMENT),
             "--chars": (args.chars is not None, TASK_LANGUAGE_MODEL),
             "--temperature": (args.temperature is not None, TASK_LANGUAGE_MODEL),
             "--seed": (args.seed is not None, TASK_LANGUAGE_MODEL),
             "--fast": (args.fast, TASK_CLASSIFY), "--top-k": (args.top_k != 5, TASK_CLASSIFY)}
    for flag, (given, owner) in flags.items():
        if given and owner != (task or TASK_CLASSIFY):
            what = f"{args.source} is a {TASK_NOUNS[task or TASK_CLASSIFY]}"
            raise ConfigError(f"{flag} is for the predictions of a {TASK_NOUNS[owner]}, but {what}; leave {flag} out")
    if args.csv and task == TASK_LANGUAGE_MODEL:
        raise ConfigError(f"--csv writes a table of images; {args.source} is a language model, whose continuations "
                          "are printed (--json for JSON lines): leave --csv out")


def run(args) -> int:
    task = source_task(args.source) if Path(args.source).exists() else None
    _refuse_other_task_flags(args, task)
    if task == TASK_SEGMENT:
        return _run_segmentation(args)
    if task == TASK_LANGUAGE_MODEL:
        return _run_language_model(args)
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


def _mask_paths(args, paths) -> list[Path]:
    """DIR/STEM.png for each image, checked writable before the model is loaded."""
    directory = Path(args.masks)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--masks {args.masks}: is a file; give a folder to write the masks into")
    targets, seen = [], {}
    for path in paths:
        target = directory / f"{path.stem}.png"
        if target in seen:
            raise ConfigError(f"--masks {args.masks}: {seen[target]} and {path} would both write {target}; predict "
                              "them into different folders")
        seen[target] = path
        targets.append(check_output_file(target, "--masks", force=args.force, example="mask.png"))
    return targets


def _run_segmentation(args) -> int:
    """A mask per image (with --masks DIR) and the share of its pixels in each class."""
    from reslab.train.evaluation import image_files  # noqa: PLC0415
    from reslab.train.prediction import predict_masks, save_mask  # noqa: PLC0415

    if args.data:
        raise ConfigError(f"--data is for MODEL --checkpoint FILE; the run {args.source} segments into its own "
                          "classes")
    paths = image_files(args.images)
    if args.csv:
        check_output_file(args.csv, "--csv", force=args.force, example="class_shares.csv")
    outputs = _mask_paths(args, paths) if args.masks else [None] * len(paths)
    run_ = load_weights_source(args, args.source)
    names = run_.class_names
    predictions = predict_masks(run_, paths)
    if args.masks:
        Path(args.masks).mkdir(parents=True, exist_ok=True)
    for prediction, output in zip(predictions, outputs):
        if output is not None:
            save_mask(prediction.mask, output)
        shares = {name: share for name, share in zip(names, prediction.fractions)}
        if args.json:
            print(json.dumps(json_ready({"image": prediction.source, "mask": str(output) if output else None,
                                         "size": list(prediction.mask.shape), "class_fractions": shares,
                                         "converted": prediction.notes})))
        else:
            listed = ", ".join(f"{name} {100 * share:.1f}%" for name, share in shares.items() if share > 0)
            written = f" -> {output}" if output else ""
            print(f"{prediction.source}: {listed}{written}")
    if args.csv:
        with atomic_path(args.csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "mask", "class_index", "class", "fraction"])
            for prediction, output in zip(predictions, outputs):
                for index, (name, share) in enumerate(zip(names, prediction.fractions)):
                    writer.writerow([prediction.source, output or "", index, name, f"{share:.6f}"])
        print(f"wrote {args.csv}", file=sys.stderr if args.json else sys.stdout)
    if not args.masks and not args.json:
        print("(give --masks DIR to write the masks as PNG files)", file=sys.stderr)
    return 0


def _run_language_model(args) -> int:
    """The continuation of each prompt (the positional arguments), greedy or sampled."""
    from reslab.train.prediction import continue_text  # noqa: PLC0415

    if args.data or args.data_dir:
        raise ConfigError(f"--data and --data-dir are for images; the language model {args.source} needs no data to "
                          "continue a prompt")
    run_ = load_weights_source(args, args.source)
    chars = 200 if args.chars is None else args.chars
    temperature = 0.0 if args.temperature is None else args.temperature
    seed = 0 if args.seed is None else args.seed
    for prompt in args.images:
        continuation = continue_text(run_, prompt, chars=chars, temperature=temperature, seed=seed)
        if args.json:
            print(json.dumps({"prompt": prompt, "continuation": continuation, "temperature": temperature,
                              "seed": seed if temperature > 0 else None}))
        else:
            print(prompt + continuation)
    return 0
