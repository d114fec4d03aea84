"""``reslab experiment transformer|rnn|mlp|dropout|family``: residual vs plain beyond image CNNs."""

from __future__ import annotations

from reslab.cli.experiment import finish
from reslab.experiments.sweeps import PLANS, run_sweep
from reslab.cli._launch import LAUNCH_FIELDS, add_launch_arguments, settings_given
from reslab.settings import add_arguments

DESCRIPTIONS = {
    "transformer": ("causal character-level transformer LM, depth × (residual, plain): losses and rank collapse",
                    "Train decoder-only character-level transformers on Python's own help topics "
                    "(pydoc_data/topics.py; or --text FILE) at every depth, with and without residual "
                    "connections, then measure final losses (nats/char, bits/char) and rank collapse at every "
                    "layer (Dong et al. 2021); writes EXP_DIR/transformer.json."),
    "rnn": ("stacked LSTM/GRU, residual between layers (GNMT) vs plain, depth sweep",
            "Train stacked LSTMs and GRUs on the character task with and without residual connections between "
            "layers at every depth; writes EXP_DIR/rnn.json."),
    "mlp": ("MLP on the digits (64-d vectors), depth sweep to 50 layers, with and without BN; gradient norms",
            "Train MLPs with and without residual connections and batch norm at every depth on the embedded "
            "digits as 64-d vectors; per-layer gradient norms at initialisation; writes EXP_DIR/mlp.json."),
    "dropout": ("dropout rate × (residual, plain) for the transformer LM, as heat maps",
                "Train the character-level transformer at one depth for every dropout rate, residual and plain; "
                "writes EXP_DIR/dropout.json (the report draws train and validation loss as heat maps)."),
    "family": ("ResNet, plain, highway and DenseNet-BC at matched parameter counts",
               "Train ResNet-20, its plain twin, highway-20 and a DenseNet-BC of about the same size with one "
               "recipe; writes EXP_DIR/family.json."),
}


def register(subparsers) -> None:
    for name, (cls, _) in PLANS.items():
        short, long = DESCRIPTIONS[name]
        parser = subparsers.add_parser(name, help=short, description=long + " Resumable: the same command again "
                                       "skips finished runs and resumes interrupted ones.")
        add_arguments(parser, cls, exclude=LAUNCH_FIELDS)
        add_launch_arguments(parser)
        parser.set_defaults(func=lambda args, n=name, c=cls: finish(n, lambda: run_sweep(n, settings_given(args, c))))
