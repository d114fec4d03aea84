"""``reslab export``: a run, a checkpoint or a model as ONNX, TorchScript or a torch.export program.

    reslab export runs/r20 --format onnx                       # runs/r20/export/resnet20.onnx
    reslab export resnet20 --pretrained cifar10 --format torchscript -o r20.pt
    reslab export resnet50 --format exported-program --input-size 224
    reslab export resnet18 --checkpoint resnet18-f37072fd.pth        # a state-dict file: ./resnet18-f37072fd.onnx

The file takes normalised images ``(N, C, H, W)`` float32 with any batch size ``N`` and returns
logits; a language model's (transformer, LSTM, GRU) takes int64 token ids ``(N, T)`` with any
``N`` and any length ``T`` up to its context and returns logits ``(N, T, V)``; a vector model's
(``resmlp{d}``) takes the images it flattens, of the size it was built for. After writing it, the
command runs the file the way a deployment would (ONNX Runtime, ``torch.jit.load``,
``torch.export.load``) on a batch of another size (and another length) and prints the largest
difference from PyTorch, absolute and relative to the largest output; it fails (exit 1) above
``--tolerance`` (1e-4) times max(1, largest |output|), the criterion of ``reslab bench infer``.
The output file is checked before anything is loaded: a directory, an unwritable place, a suffix
of another format and an existing file (without ``--force``) are refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reslab.cli._weights import CHECKPOINT_HELP, add_weights_arguments, load_weights_source
from reslab.errors import ConfigError
from reslab.models import create_model
from reslab.models.export import (
    DEFAULT_SUFFIX,
    EXPORT_FORMATS,
    check_export,
    check_length,
    check_output_suffix,
    default_input_size,
    export_model,
    trace_length,
)
from reslab.models.inputs import TOKENS, VECTORS, describe_input, input_kind, kind_of_name
from reslab.settings import parse_key_values
from reslab.store import check_output_file
from reslab.store.rundir import config_window
from reslab.train.loading import names_run_checkpoint
from reslab.train.transfer import weights_suffix


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run, checkpoint or model to ONNX, TorchScript or torch.export, and check it",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " The written file is checked against PyTorch "
                    "(ONNX in ONNX Runtime) on a batch of another size; the check is printed. An existing output "
                    "file is replaced only with --force.",
    )
    parser.add_argument("source", metavar="RUN_OR_CHECKPOINT_OR_MODEL",
                        help="a run directory, a checkpoint inside one, or a model name (fresh seeded weights, "
                             "--pretrained TAG, or the weights of --checkpoint FILE)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="(default onnx)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="file to write (default: RUN/export/MODEL<suffix> for a run, ./MODEL<suffix> for a model; "
                             "suffixes: .onnx, .pt/.pth/.torchscript, .pt2 — another format's suffix is refused)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--checkpoint", default="last", help=CHECKPOINT_HELP)
    parser.add_argument("--pretrained", metavar="TAG", help="for a model name: the shipped weights, e.g. cifar10")
    parser.add_argument("--num-classes", type=int, help="for a fresh model: classifier outputs")
    parser.add_argument("--in-chans", type=int, help="for a fresh image or vector model: input channels (default 3); "
                                                      "for a weights file: adapt its first convolution to these "
                                                      "(default: the file's); language models read tokens, no channels")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="image side used to build the graph (default: the run's; for a model its family's: 32 "
                             "for CIFAR models — ResNets, DenseNets, U-Nets on a CIFAR encoder —, 224 for ImageNet "
                             "ones, 64 for U-Nets on an ImageNet encoder; a vector model is built for N×N images, "
                             "default 8); for a language model the sequence length traced (default: the run's "
                             "window, else the model's context); the batch size and the length stay free")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted difference, times max(1, largest |output|) (default 1e-4)")
    parser.add_argument("--no-check", action="store_true", help="write the file without running it")
    parser.add_argument("--seed", type=int, default=0, help="seed of a fresh model's weights (default 0)")
    add_weights_arguments(parser, normalization=False)
    parser.set_defaults(func=run)


def _load_file(args):
    """``_load`` of MODEL --checkpoint FILE: the classifier's size from the file, channels from it or --in-chans."""
    if args.pretrained:
        raise ConfigError("give --pretrained (the shipped weights) or --checkpoint FILE, not both")
    if args.num_classes is not None:
        raise ConfigError(f"--num-classes is for a fresh model; the classifier of {args.checkpoint} has the size its "
                          "weights have")
    loaded = load_weights_source(args, args.source, in_chans=args.in_chans)
    file = Path(args.checkpoint)
    stem = file.name[:-len(weights_suffix(file) or "")] or args.source
    return loaded.model, args.source, Path(stem), loaded.image_size[0], str(file)


def _load(args):
    """(model, name, default output path, input size, where the weights came from)."""
    source = Path(args.source)
    if source.exists():
        loaded = load_weights_source(args, args.source)
        name = loaded.config["model"]
        run_dir = loaded.run_dir
        return loaded.model, name, run_dir / "export" / name, _run_input_size(loaded.model, loaded.config), \
            f"{loaded.checkpoint}"
    if os.sep in args.source or source.suffix in (".safetensors", ".pt", ".pth"):
        # Looks like a path, not a model name: say so rather than "unknown model".
        raise ConfigError(f"{args.source}: no such run directory or checkpoint file (a model name, e.g. resnet20, "
                          "needs no path)")
    if not names_run_checkpoint(args.checkpoint):
        return _load_file(args)
    import torch  # noqa: PLC0415

    torch.manual_seed(args.seed)
    options = {"pretrained": args.pretrained} if args.pretrained else {}
    options.update(parse_key_values(args.model_option, "--model-option"))
    if kind_of_name(args.source) == VECTORS and args.input_size is not None and "image_size" not in options:
        # A vector model's first layer is sized by C·H·W: build it for the images asked for.
        options["image_size"] = (args.input_size, args.input_size)
    model = create_model(args.source, num_classes=args.num_classes, in_chans=args.in_chans or 3, **options)
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size") or [None]
    default_size = size[0] or default_input_size(model, args.source)
    origin = f"pretrained={args.pretrained!r}" if args.pretrained else f"fresh weights, seed {args.seed}"
    return model, args.source, Path(args.source), default_size, origin


def _run_input_size(model, config) -> int | tuple[int, int] | None:
    """The size a run was trained at: a language model's data window, else its images'."""
    if input_kind(model) == TOKENS:
        return config_window(config)
    size = config.get("image_size")
    if input_kind(model) == VECTORS and size:
        return tuple(size) if size[0] != size[1] else size[0]
    return (size or [None])[0]


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before anything is loaded, a flag that would be ignored and an output file that could
    not be written, would replace one, or names another format."""
    if args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size must be at least 1, got {args.input_size}")
    for flag, value in (("--num-classes", args.num_classes), ("--in-chans", args.in_chans)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance must be a positive number, got {args.tolerance:g}")
    if not Path(args.source).exists() and args.in_chans is not None and kind_of_name(args.source) == TOKENS:
        raise ConfigError(f"--in-chans is for image and vector models; {args.source} is a language model, which reads "
                          "token ids (N, T) with no channels: drop the flag")
    if Path(args.source).exists():
        ignored = [flag for flag, value in (("--pretrained", args.pretrained), ("--num-classes", args.num_classes),
                                            ("--in-chans", args.in_chans)) if value is not None]
        if ignored:
            raise ConfigError(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} for a model name; "
                              f"{args.source} is a run (or a checkpoint in one), whose weights and shape are its own: "
                              "drop the flag, or give a model name")
    if args.output:
        _check_output(args.output, args)


def _check_output(output, args: argparse.Namespace) -> Path:
    check_output_suffix(output, args.format)
    return check_output_file(output, "-o", force=args.force, example=f"model{DEFAULT_SUFFIX[args.format]}")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    model, name, stem, size, origin = _load(args)
    input_size = args.input_size or size or default_input_size(model, name)
    output = _check_output(args.output or stem.with_name(stem.name + DEFAULT_SUFFIX[args.format]), args)
    tokens = input_kind(model) == TOKENS
    in_chans = None if tokens else getattr(model, "in_chans", None)
    if tokens:
        input_size = trace_length(model, input_size)  # what the file is traced at, said as such
    path = export_model(model, output, args.format, input_size, in_chans)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {name} ({origin}) as {args.format}, input "
          f"{describe_input(model, input_size, in_chans)}")
    if args.no_check:
        return 0
    check = check_export(model, path, args.format, input_size, in_chans)
    runner = {"onnx": "ONNX Runtime", "torchscript": "torch.jit.load", "exported-program": "torch.export.load"}
    verdict = "OK" if check.passed(args.tolerance) else "FAILED"
    batch = f"3 sequences of {check_length(model, input_size)} tokens" if tokens else "3"
    print(f"check: {runner[args.format]} vs PyTorch on a batch of {batch}: max |difference| {check.max_abs_diff:.2e}, "
          f"relative {check.relative:.1e} (largest |output| {check.largest_output:.3g}; passes up to "
          f"{args.tolerance:g} x max(1, {check.largest_output:.3g})) {verdict}")
    if verdict != "OK":
        print(f"reslab export: the exported file differs from the model by {check.max_abs_diff:.2e} > "
              f"{args.tolerance:g} x {check.scale:.3g}", file=sys.stderr)
        return 1
    return 0
