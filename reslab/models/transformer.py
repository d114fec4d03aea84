"""A decoder-only, causal, character-level transformer language model, residual or plain.

``transformer{d}`` has ``d`` layers, each two :class:`~reslab.models.residual.Residual` units —
causal self-attention, then a 4×-wide GELU MLP — whose merge is an option: ``"sum"`` (GPT),
``"none"`` (``plain_transformer{d}``: no skip connections anywhere), ``"rezero"``
(``rezero_transformer{d}``) or ``"highway"``; LayerNorm ``"pre"`` (GPT-2) or ``"post"`` (Vaswani
et al.). Input int64 tokens ``(B, T)``, output logits ``(B, T, V)`` with V = ``num_classes``.

Options: ``width`` (128), ``heads`` (4), ``context`` (256: the longest input; a longer one is a
ModelConfigError), ``merge`` ("sum" | "none" | "highway" | "rezero"; fixed by the ``plain_`` and
``rezero_`` names, free for ``transformer{d}``), ``norm`` ("pre" | "post"), ``dropout`` (0.0:
on the embeddings and on each branch's output, before it joins the stream) and
``attention_dropout`` (0.0: on the attention weights). They are separate because dropout on the
attention weights moves PyTorch's fused attention off its fast CPU kernel onto the reference
one (measured: a causal 128-token attention's forward + backward 5 ms → 55 ms at p = 0.1), while
the dropout that works with residual connections is the one on the branches. Token + learned position
embeddings → layers → final LayerNorm → linear head. Initialisation as GPT-2: N(0, 0.02) for
every Linear and Embedding, biases 0, and with merge "sum" the two projections writing into the
residual stream (``attention_unit.branch.proj``, ``mlp_unit.branch.fc2``) at 0.02/√(2·depth).
``layer_outputs(tokens)`` gives the embeddings and each layer's output (before the final norm),
what :func:`reslab.analysis.rank_collapse.rank_collapse` measures.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ModelConfigError
from reslab.models.family import ModelFamily
from reslab.models.registry import register_family
from reslab.models.residual import MERGES, Residual, check_choice, check_positive, check_probability

DEFAULTS = {"width": 128, "heads": 4, "context": 256, "merge": "sum", "norm": "pre", "dropout": 0.0,
            "attention_dropout": 0.0}


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class FeedForward(nn.Sequential):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * width, width)


class TransformerLayer(nn.Module):
    def __init__(self, width: int, heads: int, merge: str, norm: str, dropout: float,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.attention_unit = Residual(CausalSelfAttention(width, heads, attention_dropout), width, merge=merge,
                                       norm=nn.LayerNorm(width), norm_position=norm, dropout=dropout)
        self.mlp_unit = Residual(FeedForward(width), width, merge=merge, norm=nn.LayerNorm(width),
                                 norm_position=norm, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_unit(self.attention_unit(x))


class CharTransformer(nn.Module):
    """Token + learned position embeddings → ``depth`` layers → LayerNorm → linear head."""

    def __init__(self, vocab: int, depth: int, *, width: int = 128, heads: int = 4, context: int = 256,
                 merge: str = "sum", norm: str = "pre", dropout: float = 0.0,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.context, self.merge = context, merge
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(context, width)
        self.embedding_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(TransformerLayer(width, heads, merge, norm, dropout, attention_dropout)
                                    for _ in range(depth))
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        # GPT-2: N(0, 0.02) everywhere; the projections that write into the residual stream scaled
        # by 1/sqrt(2·depth) so the stream's variance does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.merge == "sum":
            for layer in self.layers:
                for linear in (layer.attention_unit.branch.proj, layer.mlp_unit.branch.fc2):
                    nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * len(self.layers)))

    @property
    def is_plain(self) -> bool:
        return self.merge == "none"

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ModelConfigError(f"{self.model_name} takes int64 tokens of shape (B, T), got {tokens.dtype} "
                                   f"{tuple(tokens.shape)}")
        if tokens.shape[1] > self.context:
            raise ModelConfigError(f"{self.model_name}: {tokens.shape[1]} tokens are more than its context of "
                                   f"{self.context}; build it with context={tokens.shape[1]} or more")
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.embedding_dropout(self.token_embedding(tokens) + self.position_embedding(positions))

    def layer_outputs(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The token representations (B, T, D): the embeddings, then after every layer (before the final norm)."""
        outputs = [self.embed(tokens)]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        return outputs

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.final_norm(x))


def _build(name: str, depth: int, *, num_classes: int, in_chans: int = 1, fixed: dict | None = None,
           locked: bool = False, **options) -> CharTransformer:
    """``fixed`` sets the name's defaults; ``locked`` names (plain_, rezero_) refuse another merge."""
    del in_chans  # tokens have no channels
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ModelConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; options are: {', '.join(DEFAULTS)}")
    fixed = fixed or {}
    if locked and "merge" in options and options["merge"] != fixed.get("merge"):
        raise ModelConfigError(f"{name}: the name fixes merge={fixed.get('merge')!r}, got merge={options['merge']!r}; "
                               f"use transformer{depth} with merge={options['merge']!r}")
    settings = {**DEFAULTS, **fixed, **options}
    check_positive(name, "depth", depth)
    for key in ("width", "heads", "context"):
        check_positive(name, key, settings[key])
    if settings["width"] % settings["heads"]:
        raise ModelConfigError(f"{name}: width {settings['width']} must be divisible by heads {settings['heads']}")
    check_choice(name, "merge", settings["merge"], MERGES)
    check_choice(name, "norm", settings["norm"], ("pre", "post"))
    for key in ("dropout", "attention_dropout"):
        settings[key] = check_probability(name, key, settings[key])
    model = CharTransformer(num_classes, depth, **settings)
    model.model_name, model.model_options = name, dict(settings)
    return model


def _family(prefix: str, merge: str, description: str, examples) -> ModelFamily:
    locked = prefix != "transformer"  # transformer{d} takes any merge; plain_/rezero_ names are what they say
    return ModelFamily(f"{prefix}{{d}}", re.compile(rf"{prefix}(\d+)"), "sequence", description,
                       lambda name, depth, **kw: _build(name, depth, fixed={"merge": merge}, locked=locked, **kw),
                       default_num_classes=96, default_input_size=256, examples=tuple(examples))


register_family(_family("transformer", "sum", "causal character-level transformer LM with d layers (pre-LN, residual)",
                        ("transformer2", "transformer4", "transformer8")))
register_family(_family("plain_transformer", "none", "the transformer LM without skip connections (plain twin)",
                        ("plain_transformer2", "plain_transformer4", "plain_transformer8")))
register_family(_family("rezero_transformer", "rezero", "the transformer LM with ReZero branches (x + α·F(x), α = 0 at init)",
                        ("rezero_transformer4",)))
