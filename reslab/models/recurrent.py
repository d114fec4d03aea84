"""Stacked LSTMs and GRUs with residual connections between layers (Wu et al. 2016, GNMT), or plain.

``lstm{d}``/``gru{d}``: embedding → ``d`` single-layer recurrent layers, each wrapped in a
:class:`~reslab.models.residual.Residual` unit (x + RNN(x); GNMT adds the input of a layer to its
output) with dropout on the branch → LayerNorm → linear head. ``plain_lstm{d}``/``plain_gru{d}``
stack the same layers without the additions — the deep stacks GNMT's authors found to "work well
up to 4 layers, barely with 6, and very poorly beyond 8". Tokens ``(B, T)`` → logits ``(B, T, V)``.

Options: ``width`` (128: embedding and hidden size), ``dropout`` (0.0, on each layer's output
before the merge, i.e. between layers) and ``merge`` ("sum" | "none" | "highway" | "rezero"; the
``plain_`` names fix "none"). PyTorch's default initialisation. ``layer_outputs(tokens)`` gives
the embeddings and each layer's output (before the final LayerNorm).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from reslab.errors import ModelConfigError
from reslab.models.family import ModelFamily
from reslab.models.registry import register_family
from reslab.models.residual import MERGES, Residual, check_choice, check_positive, check_probability

DEFAULTS = {"width": 128, "dropout": 0.0, "merge": "sum"}
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLayer(nn.Module):
    """One recurrent layer as a branch: the output sequence only (the final state is dropped)."""

    def __init__(self, cell: str, width: int) -> None:
        super().__init__()
        self.rnn = CELLS[cell](width, width, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class StackedRNN(nn.Module):
    def __init__(self, cell: str, vocab: int, depth: int, *, width: int = 128, dropout: float = 0.0,
                 merge: str = "sum") -> None:
        super().__init__()
        self.cell, self.merge = cell, merge
        self.token_embedding = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(Residual(RecurrentLayer(cell, width), width, merge=merge, dropout=dropout)
                                    for _ in range(depth))
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    @property
    def is_plain(self) -> bool:
        return self.merge == "none"

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ModelConfigError(f"{self.model_name} takes int64 tokens of shape (B, T), got {tokens.dtype} "
                                   f"{tuple(tokens.shape)}")

    def layer_outputs(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The token representations (B, T, D): the embeddings, then after every layer (before the final norm)."""
        self._check(tokens)
        outputs = [self.token_embedding(tokens)]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        return outputs

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self._check(tokens)
        x = self.token_embedding(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.final_norm(x))


def _build(name: str, depth: int, *, cell: str, default_merge: str, num_classes: int, in_chans: int = 1,
           **options) -> StackedRNN:
    del in_chans
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ModelConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; options are: {', '.join(DEFAULTS)}")
    if default_merge == "none" and options.get("merge", "none") != "none":
        raise ModelConfigError(f"{name}: the name fixes merge='none' (no shortcuts), got merge={options['merge']!r}; "
                               f"use {name.removeprefix('plain_')} with merge={options['merge']!r}")
    settings = {**DEFAULTS, "merge": default_merge, **options}
    check_positive(name, "depth", depth)
    check_positive(name, "width", settings["width"])
    check_choice(name, "merge", settings["merge"], MERGES)
    settings["dropout"] = check_probability(name, "dropout", settings["dropout"])
    model = StackedRNN(cell, num_classes, depth, **settings)
    model.model_name, model.model_options = name, dict(settings)
    return model


def _family(prefix: str, cell: str, merge: str, description: str, examples) -> ModelFamily:
    return ModelFamily(f"{prefix}{{d}}", re.compile(rf"{prefix}(\d+)"), "sequence", description,
                       lambda name, depth, **kw: _build(name, depth, cell=cell, default_merge=merge, **kw),
                       default_num_classes=96, default_input_size=256, examples=tuple(examples))


register_family(_family("lstm", "lstm", "sum", "stacked LSTM of d layers with residual connections between them (GNMT)",
                        ("lstm2", "lstm4", "lstm8")))
register_family(_family("plain_lstm", "lstm", "none", "stacked LSTM of d layers without residual connections",
                        ("plain_lstm2", "plain_lstm4", "plain_lstm8")))
register_family(_family("gru", "gru", "sum", "stacked GRU of d layers with residual connections between them", ("gru4",)))
register_family(_family("plain_gru", "gru", "none", "stacked GRU of d layers without residual connections", ("plain_gru4",)))
