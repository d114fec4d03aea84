"""The source of every command that takes trained weights: a RUN_DIR, or ``MODEL --checkpoint FILE``.

One resolver (:func:`reslab.train.loading.load_source`) serves eval, predict, export, bench infer
and the analyses, so a torchvision, timm or public CIFAR ResNet state dict is read, mapped and
reported the same way everywhere (and the same way ``reslab finetune`` reads it). The flags that
describe such a file's weights are here: ``--model-option`` (e.g. ``shortcut_pad=both``) and the
normalisation it was trained with, ``--mean``/``--std``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from reslab.errors import ConfigError
from reslab.settings import parse_key_values

#: The help of ``--checkpoint`` where a MODEL may come with a weights file.
CHECKPOINT_HELP = ("for a run: last (default), init, ema, epoch_K; for a MODEL name: a weights file on local disk "
                   "(.pth, .pt, .pth.tar, .bin, .safetensors: torchvision's, timm's or other code's state dict, "
                   "never downloaded)")


def add_normalization_arguments(group) -> None:
    """``--mean`` and ``--std``: the normalisation a weights file's model was trained with."""
    group.add_argument("--mean", metavar="M[,M,...]",
                       help="for MODEL --checkpoint FILE: the per-channel mean the weights were trained with, e.g. "
                            "0.485,0.456,0.406 (ImageNet's); default: the training statistics of --data")
    group.add_argument("--std", metavar="S[,S,...]",
                       help="for MODEL --checkpoint FILE: the per-channel std the weights were trained with, e.g. "
                            "0.229,0.224,0.225 (ImageNet's); default: the training statistics of --data")


def add_weights_arguments(parser: argparse.ArgumentParser, normalization: bool = True) -> None:
    """The flags of a weights file given as ``MODEL --checkpoint FILE`` (``normalization``: with
    ``--mean``/``--std``, for the commands that normalise images themselves)."""
    group = parser.add_argument_group("weights file (MODEL --checkpoint FILE)")
    group.add_argument("--model-option", metavar="KEY=VALUE", action="append", default=[],
                       help="option of MODEL (for --checkpoint FILE: one its weights were trained with), "
                            "repeatable (e.g. shortcut_pad=both for weights of the public CIFAR ResNet code; see "
                            "docs/models.md)")
    if normalization:
        add_normalization_arguments(group)


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """``"0.5,0.25"`` → ``(0.5, 0.25)``; ConfigError naming ``flag`` for anything else."""
    if text is None:
        return None
    try:
        return tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected numbers separated by commas, one per input channel, e.g. "
                          f"{flag} 0.485,0.456,0.406") from None


def load_weights_source(args: argparse.Namespace, source: str, dataset=None, *, check_classes: bool = True,
                        in_chans: int | None = None):
    """:func:`reslab.train.loading.load_source` of ``source`` with the command's flags; its notes on stderr."""
    from reslab.train.loading import load_source  # noqa: PLC0415 - the train room is needed only here

    loaded = load_source(source, args.checkpoint, dataset=dataset, in_chans=in_chans, check_classes=check_classes,
                         model_options=parse_key_values(getattr(args, "model_option", None), "--model-option"),
                         mean=parse_floats(getattr(args, "mean", None), "--mean"),
                         std=parse_floats(getattr(args, "std", None), "--std"))
    command = [args.command] + [getattr(args, key) for key in ("bench", "analysis") if getattr(args, key, None)]
    say_weights(loaded.config, "reslab " + " ".join(command))
    return loaded


def say_weights(config: Mapping[str, Any], prefix: str) -> None:
    """What was read from a weights file and how it was mapped, on stderr (nothing for a run)."""
    record = config.get("weights_file")
    if not record:
        return
    entry = f" (its {record['entry']!r} entry)" if record.get("entry") else ""
    print(f"{prefix}: weights: {record['path']}{entry} in {config['model']}"
          + "".join(f", {k}={v}" for k, v in (config.get("model_options") or {}).items())
          + f": {record['copied_tensors']} tensors and the {record['head']} classifier ({config['num_classes']} "
          f"classes)" + (f"; normalisation: {_stats(config)}" if config.get("mean") is not None else ""),
          file=sys.stderr)
    for note in record.get("notes") or []:
        print(f"{prefix}: note: {note}", file=sys.stderr)


def _stats(config: Mapping[str, Any]) -> str:
    numbers = lambda values: ",".join(f"{v:.4g}" for v in values)  # noqa: E731
    return f"mean {numbers(config['mean'])} std {numbers(config['std'])}, {config.get('normalization')}"


__all__ = ["CHECKPOINT_HELP", "add_normalization_arguments", "add_weights_arguments", "load_weights_source",
           "parse_floats", "say_weights"]
