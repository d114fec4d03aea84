"""``reslab profile``: parameters, MACs/FLOPs, depth and activation memory of a model or the family.

    reslab profile resnet56
    reslab profile resnet1202 --batch-size 128 --activation-checkpointing
    reslab profile --table all
    reslab profile --pretrained
"""

from __future__ import annotations

import argparse
import json

from reslab.errors import ConfigError
from reslab.models.pretrained import list_pretrained, pretrained_tags
from reslab.models.profile import format_table, profile_model, profile_table
from reslab.settings import parse_key_values
from reslab.models.inputs import TOKENS, kind_of_name
from reslab.store.rundir import config_model, config_window, is_run_dir, read_config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="parameters, MACs/FLOPs, weight layers and activation memory of a model (or the family table)",
        description=(
            "Profile one model, or print the family side by side with the published figures (--table). "
            "MACs are multiply-accumulates of one image (conv + fc, counted with torch.utils.flop_counter); "
            "FLOPs = 2 × MACs. Activation memory: tensors saved for backward by one training step."
        ),
    )
    parser.add_argument("model", nargs="?", metavar="MODEL|RUN_DIR",
                        help="model name (see reslab.list_models()), e.g. resnet56, plain56, resnet50; or a run "
                             "directory (its model, options, classes, channels and image size)")
    parser.add_argument("--table", choices=("cifar", "imagenet", "all"),
                        help="print the family table with published figures instead of one model")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the pretrained weights that ship with reslab (how they were made, accuracy)")
    parser.add_argument("--input-size", type=int, metavar="N",
                        help="image side N (N×N); default 32 (CIFAR) or 224 (ImageNet), a vector model's image size "
                             "(8; N builds it for N×N images); for a language model the sequence length T of its "
                             "(1, T) int64 input, default its context (256 for LSTMs and GRUs)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B",
                        help="batch of the training step whose activation memory is measured (default 1)")
    parser.add_argument("--in-chans", type=int, metavar="C",
                        help="input channels (default 3; not for language models, which read tokens)")
    parser.add_argument("--num-classes", type=int, metavar="K", help="classifier outputs (default 10 CIFAR, 1000 ImageNet)")
    parser.add_argument("--shortcut", choices=("A", "B", "C", "none"), help="shortcut option (none = plain twin)")
    parser.add_argument("--attention", choices=("se", "cbam"), help="channel/spatial attention in every block")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="any model option, repeatable (e.g. --set drop_path=0.1 --set gated=true)")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="profile with activation checkpointing (blocks keep only their inputs)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda[:i]: with CUDA, also measure a real training step's peak memory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _list_pretrained(args)
    if args.table:
        if args.model:
            raise ConfigError("give either a MODEL or --table, not both")
        rows = profile_table(args.table, progress=not args.quiet)
        print(json.dumps([row.to_dict() for row in rows], indent=2) if args.json else format_table(rows))
        return 0
    if not args.model:
        raise ConfigError("name a MODEL (e.g. reslab profile resnet56) or pass --table cifar|imagenet|all")
    options = parse_key_values(args.options, "--set", example="drop_path=0.1")
    for key in ("shortcut", "attention"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.activation_checkpointing:
        options["activation_checkpointing"] = True
    name, sizes = args.model, {"input_size": args.input_size, "in_chans": args.in_chans,
                               "num_classes": args.num_classes}
    if is_run_dir(args.model):
        # A run: profile the network it trained, at the size it was trained on.
        config = read_config(args.model)
        name, run_options = config_model(config)
        options = {**run_options, **options}
        image_size = config.get("image_size")
        trained = {"input_size": tuple(image_size) if image_size else None, "in_chans": config.get("in_chans"),
                   "num_classes": config.get("num_classes")}
        if kind_of_name(name) == TOKENS:  # the window it trained on; token ids have no channels
            trained.update(input_size=config_window(config), in_chans=None)
        sizes = {key: value if value is not None else trained[key] for key, value in sizes.items()}
    profile = profile_model(name, batch_size=args.batch_size, device=args.device, **sizes, **options)
    print(json.dumps(profile.to_dict(), indent=2) if args.json else profile.format())
    tags = pretrained_tags(name)
    if tags and not args.json:
        print(f"pretrained weights (shipped, offline): {', '.join(f'create_model({name!r}, pretrained={t!r})' for t in tags)}"
              " - see reslab profile --pretrained")
    return 0


def _list_pretrained(args: argparse.Namespace) -> int:
    shipped = [weights for weights in list_pretrained() if not args.model or weights.model == args.model]
    if args.json:
        print(json.dumps([{"model": w.model, "tag": w.tag, "file": str(w.path), **w.metadata} for w in shipped],
                         indent=2))
        return 0
    if not shipped:
        print(f"no pretrained weights ship for {args.model}" if args.model else "no pretrained weights ship")
        return 0
    for weights in shipped:
        meta = weights.metadata
        print(f"{weights.describe()}")
        print(f"    load: reslab.create_model({weights.model!r}, pretrained={weights.tag!r}); "
              f"check: reslab eval {weights.model} --pretrained {weights.tag}")
        print(f"    data {meta.get('data')} ({meta.get('num_classes')} classes, {meta.get('num_train')} training "
              f"images), batch {meta.get('batch_size')}, bf16 {meta.get('bf16')}, {meta.get('threads')} thread(s), "
              f"{meta.get('wall_time_s', 0) / 60:.0f} min; reslab {(meta.get('versions') or {}).get('reslab')}, "
              f"torch {(meta.get('versions') or {}).get('torch')}; trained {meta.get('trained')}")
        print(f"    made by: {meta.get('command')}")
        print(f"    inputs: {meta.get('in_chans')}x{'x'.join(map(str, meta.get('input_size') or []))}, normalised "
              f"with mean {_rounded(meta.get('mean'))} std {_rounded(meta.get('std'))}")
    return 0


def _rounded(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values or []) + ")"
