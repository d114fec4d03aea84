"""``reslab experiment transfer``: pretrain on some classes, fine-tune on few images of others, vs scratch."""

from __future__ import annotations

from reslab.cli.experiment import finish
from reslab.experiments.transfer import TransferSettings, run_transfer
from reslab.cli._launch import LAUNCH_FIELDS, add_launch_arguments, settings_given
from reslab.settings import add_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "transfer", help="transfer learning on a class split: fine-tuned vs trained from scratch on few images",
        description="Pretrain a network on some classes of a dataset (CIFAR-10: airplane, automobile, bird, cat, "
                    "deer; all their training images), fine-tune it on --per-class images of each of the other "
                    "classes (dog, frog, horse, ship, truck), and train the same architecture from scratch on the same "
                    "images for the same epochs; both are tested on the new classes' test images. Writes "
                    "EXP_DIR/transfer.json (the report's Transfer learning section). Resumable: the same command "
                    "skips finished runs.")
    add_arguments(parser, TransferSettings, exclude=LAUNCH_FIELDS)
    add_launch_arguments(parser)
    parser.set_defaults(func=lambda args: finish("transfer", lambda: run_transfer(settings_given(args, TransferSettings))))
