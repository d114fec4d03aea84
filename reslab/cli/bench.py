"""``reslab bench infer MODEL``: every CPU inference path of a model, measured side by side.

    reslab bench infer resnet50                               # fresh weights, 224x224, random images
    reslab bench infer resnet50 --checkpoint resnet50-0676ba61.pth  # a torchvision state-dict file on disk
    reslab bench infer resnet20 --pretrained cifar10 --data cifar10 --data-dir ../shared/data
    reslab bench infer runs/r56 --check-images 0              # a run: its test set, calibrated on its training set

Paths: eager, BN folding, channels-last, torch.compile (freezing), ONNX Runtime fp32, int8 PT2E
(torchao, x86 inductor quantizer) and int8 ONNX Runtime (QDQ); a language model (transformer,
LSTM, GRU) takes eager, torch.compile and ONNX Runtime fp32 on int64 token ids (N, T), T its data's
window or --input-size (default: its context, 256 without one). Printed: latency at batch 1 and
throughput at --batch as ratios to eager and to ONNX Runtime fp32, largest output difference and
top-1 agreement with eager, and the CPU's features. For a run the result is also written to
RUN/inference.json, with a fingerprint of the weights measured, and the ONNX Runtime paths' files
to RUN/inference/: ``reslab predict --fast`` uses the fastest path that passed for those weights.
--json prints the measurements as JSON on stdout instead of the table; -o FILE writes them to FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from reslab.applications.inference import PATHS, RESULT_FILE, TOKEN_PATHS, bench_inference
from reslab.cli._weights import CHECKPOINT_HELP, add_weights_arguments, load_weights_source
from reslab.errors import ConfigError
from reslab.models.inputs import TOKENS, default_size, input_kind, vocabulary
from reslab.settings import parse_key_values
from reslab.store import check_output_file
from reslab.store.jsonfiles import json_ready, write_json
from reslab.store.rundir import TASK_CLASSIFY, config_task, config_window, read_config


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks of a model (infer: every CPU inference path)",
                                   description="Benchmarks of a model.")
    kinds = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    infer = kinds.add_parser("infer", help="latency and throughput of every CPU inference path, fp32 and int8",
                             description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " "
                             + " ".join(__doc__.split("\n\n")[2:]).replace("\n", " "))
    infer.add_argument("model", metavar="MODEL_OR_RUN", help="a model name (fresh seeded weights, or --pretrained) "
                                                             "or a run directory")
    infer.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    infer.add_argument("--pretrained", metavar="TAG", help="for a model name: the shipped weights, e.g. cifar10")
    infer.add_argument("--input-size", type=int, metavar="N", help="image side (default: the run's or the data's; "
                                                                     "32 for CIFAR models, 224 for ImageNet ones); "
                                                                     "for a language model the sequence length")
    infer.add_argument("--data", help="images for the checks and the int8 calibration (default: the run's data; "
                                      "for a model name, random normal images)")
    infer.add_argument("--data-dir", help="where --data's files are")
    infer.add_argument("--paths", nargs="+", choices=PATHS,
                       help=f"paths to measure (default all; for a language model {', '.join(TOKEN_PATHS)})")
    infer.add_argument("--batch", type=int, default=16, help="batch of the throughput measurement (default 16)")
    infer.add_argument("--check-images", type=int, default=1000,
                       help="test images for the output check and the top-1 agreement (default 1000; 0 = all)")
    infer.add_argument("--calibration-images", type=int, default=256,
                       help="training images the int8 paths are calibrated on (default 256)")
    infer.add_argument("--min-time", type=float, default=2.0, help="seconds each timing runs at least (default 2)")
    infer.add_argument("--threads", type=int, help="torch / ONNX Runtime threads (default: torch's)")
    infer.add_argument("--json", action="store_true",
                       help="print the measurements as JSON on stdout instead of the table (which goes to stderr), "
                            "as every reslab command's --json; -o FILE writes them to a file")
    infer.add_argument("-o", "--output", metavar="FILE", help="also write the measurements to FILE as JSON; an "
                                                               "existing FILE only with --force")
    infer.add_argument("--force", action="store_true", help="replace an existing -o FILE")
    infer.add_argument("--seed", type=int, default=0, help="seed of a fresh model's weights and random images")
    add_weights_arguments(infer)
    infer.set_defaults(func=run_infer)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _load(args):
    """(model, name, run_dir or None, dataset or None, input side, (mean, std) or None, what a weights file
    was read as (``weights_file``, its model options and normalisation) or None)."""
    from reslab.data import load_dataset  # noqa: PLC0415
    from reslab.models import create_model  # noqa: PLC0415
    from reslab.train.loading import names_run_checkpoint  # noqa: PLC0415

    source = Path(args.model)
    if source.exists():
        loaded = load_weights_source(args, args.model)
        dataset = load_dataset(args.data, data_dir=args.data_dir) if args.data else loaded.dataset
        if input_kind(loaded.model) == TOKENS:  # the window it trained on; token ids need no normalising
            size = config_window(loaded.config) or default_size(loaded.model)
            return loaded.model, loaded.config["model"], loaded.run_dir, dataset, size, None, None
        return (loaded.model, loaded.config["model"], loaded.run_dir, dataset, loaded.image_size[0],
                (loaded.mean, loaded.std), None)
    if not names_run_checkpoint(args.checkpoint):
        return _load_file(args)
    torch.manual_seed(args.seed)
    options = {"pretrained": args.pretrained} if args.pretrained else {}
    options.update(parse_key_values(args.model_option, "--model-option"))
    dataset = load_dataset(args.data, data_dir=args.data_dir) if args.data else None
    extra = {"num_classes": dataset.num_classes, "in_chans": dataset.in_chans} if dataset is not None and not args.pretrained else {}
    model = create_model(args.model, **options, **extra)
    spec = getattr(model, "spec", None)
    if input_kind(model) == TOKENS:
        size = getattr(dataset, "context", None) or default_size(model)
    else:
        size = dataset.image_size[0] if dataset is not None else (32 if spec is not None and spec.stem == "cifar"
                                                                 else 224)
    return model.eval(), args.model, None, dataset, size, None, None


def _load_file(args):
    """``_load`` of MODEL --checkpoint FILE: the head from the file; channels (and images) from --data if given."""
    from reslab.data import load_dataset  # noqa: PLC0415

    if args.pretrained:
        raise ConfigError("give --pretrained (the shipped weights) or --checkpoint FILE, not both")
    dataset = load_dataset(args.data, data_dir=args.data_dir) if args.data else None
    # Agreement between paths needs no labels, so the file's classes need not be the data's.
    loaded = load_weights_source(args, args.model, dataset, check_classes=False)
    config = loaded.config
    stats = (loaded.mean, loaded.std) if config.get("mean") is not None else None
    record = {key: config.get(key) for key in ("weights_file", "model_options", "mean", "std", "normalization")}
    return loaded.model, args.model, None, dataset, loaded.image_size[0], stats, record


def _images(args, model, dataset, size, config_stats):
    """(check images, calibration images, where they came from), normalised float32."""
    from reslab.data import normalize  # noqa: PLC0415

    if input_kind(model) == TOKENS:
        return _token_windows(args, model, dataset, size)
    in_chans = getattr(model, "in_chans", 3) or 3
    if dataset is None:
        generator = torch.Generator().manual_seed(args.seed)
        count = args.check_images or 256
        check = torch.randn(count, in_chans, size, size, generator=generator)
        calibration = torch.randn(args.calibration_images, in_chans, size, size, generator=generator)
        return check, calibration, "random normal images (no --data: agreement of a model on noise)"
    mean, std = config_stats or (dataset.mean, dataset.std)
    test = dataset.test_images if dataset.num_test else dataset.train_images
    count = test.shape[0] if args.check_images == 0 else min(args.check_images, test.shape[0])
    check = normalize(test[:count], mean, std).float()
    calibration = normalize(dataset.train_images[:args.calibration_images], mean, std).float()
    if check.shape[-1] != size and args.input_size:
        raise ConfigError(f"--input-size {args.input_size} differs from the data's {check.shape[-1]}")
    split = "test" if dataset.num_test else "training"
    return check, calibration, f"{dataset.name} {split} images 1-{count}"


def _token_windows(args, model, dataset, size):
    """(check windows, calibration windows, where they came from) for a token model: windows of ``size``
    tokens of the text's test part (its training part if it has none), else random ids."""
    count = args.check_images or 256
    tokens = None
    if getattr(dataset, "kind", None) == "text":
        tokens = dataset.test_tokens if dataset.num_test > size else dataset.train_tokens
    if tokens is None or tokens.numel() < size:
        generator = torch.Generator().manual_seed(args.seed)
        check = torch.randint(0, vocabulary(model), (count, size), generator=generator)
        return check, check[:1], "random token ids (no text data: agreement of a model on noise)"
    windows = tokens[: tokens.numel() // size * size].view(-1, size)
    if args.check_images:
        windows = windows[:args.check_images]
    split = "test" if tokens is dataset.test_tokens else "training"
    return windows, windows[:1], f"{dataset.name} data, {split} part: {windows.shape[0]} windows of {size} tokens"


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before anything is loaded or measured, a flag that would be ignored and an output
    that could not be written."""
    if args.batch < 1 or args.check_images < 0 or args.calibration_images < 1:
        raise ConfigError("--batch and --calibration-images must be at least 1, --check-images at least 0")
    if args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size must be at least 1, got {args.input_size}")
    if args.min_time < 0 or (args.threads is not None and args.threads < 1):
        raise ConfigError("--min-time must be at least 0 and --threads at least 1")
    source = Path(args.model)
    if source.exists() and args.pretrained:
        raise ConfigError(f"--pretrained {args.pretrained} is for a model name; {args.model} is a run, whose weights "
                          "are its checkpoints (--checkpoint last, ema, epoch_K)")
    if args.output:
        check_output_file(args.output, "-o", force=args.force, example="inference.json")
    if source.is_dir():
        # the run's record is replaced by design; only whether it can be written is in question
        check_output_file(source / RESULT_FILE, "the record", force=True)


def run_infer(args: argparse.Namespace) -> int:
    _check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, name, run_dir, dataset, size, stats, weights = _load(args)
    size = args.input_size or size
    paths = args.paths or (list(TOKEN_PATHS) if input_kind(model) == TOKENS else list(PATHS))
    check, calibration, where = _images(args, model, dataset, size, stats)
    with torch.no_grad():  # an input the model refuses (a size a U-Net cannot pool) is one line, before any timing
        model.eval()(check[:1])
    say = lambda message: print(f"reslab bench infer: {message}", file=sys.stderr, flush=True)  # noqa: E731
    bench = bench_inference(model, check, calibration, paths=paths, batch=args.batch, min_time=args.min_time,
                            model_name=name, check_source=where, say=say, keep=run_dir)
    text = sys.stderr if args.json else sys.stdout  # under --json, stdout holds the JSON alone
    print(bench.table(), file=text)
    data = bench.to_dict()
    if weights is not None:
        data.update(weights)
    if run_dir is not None:
        data["checkpoint"] = args.checkpoint
        write_json(run_dir / RESULT_FILE, data)
        if input_kind(model) == TOKENS or config_task(read_config(run_dir)) != TASK_CLASSIFY:
            print(f"wrote {run_dir / RESULT_FILE} (the measurements of these weights, fingerprint "
                  f"{bench.weights_fingerprint})", file=text)
        else:
            print(f"wrote {run_dir / RESULT_FILE} (reslab predict {run_dir} IMAGES --fast uses its fastest passing "
                  f"path for these weights, fingerprint {bench.weights_fingerprint})", file=text)
    if args.output:
        write_json(args.output, data)
        print(f"wrote {args.output}", file=text)
    if args.json:
        print(json.dumps(json_ready(data)))
    return 0 if not any(r.error and not r.error.startswith("needs ") for r in bench.results) else 1


__all__ = ["register", "run_infer"]
