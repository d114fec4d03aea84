"""The residual wrapper and the families outside the ResNet spec: transformer, recurrent stacks, MLPs."""

from __future__ import annotations

import pytest
import torch

import reslab
from reslab.analysis.rank_collapse import rank_collapse
from reslab.errors import ModelConfigError
from reslab.models import named_blocks, weight_layers
from reslab.models.residual import Residual


def _tokens(batch=2, length=12, vocab=20, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("merge", ["sum", "none", "highway", "rezero"])
def test_residual_merges(merge):
    torch.manual_seed(0)
    unit = Residual(torch.nn.Linear(8, 8), 8, merge=merge)
    x = torch.randn(3, 8)
    f = unit.branch(x)
    expected = {"sum": x + f, "none": f, "rezero": x,  # ReZero starts as the identity
                "highway": torch.sigmoid(torch.tensor(-2.0)) * f + (1 - torch.sigmoid(torch.tensor(-2.0))) * x}[merge]
    assert torch.allclose(unit(x), expected, atol=1e-6)
    assert unit.residual == (merge != "none")
    assert ("gate" in dict(unit.named_children())) == (merge == "highway")
    unit.branch_enabled = False  # lesion: the shortcut (or, for a plain unit, the identity) alone
    assert torch.equal(unit(x), x)


def test_norm_position_is_a_value():
    torch.manual_seed(0)
    branch = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8) * 3 + 1
    pre = Residual(branch, 8, norm=torch.nn.LayerNorm(8), norm_position="pre")
    post = Residual(branch, 8, norm=torch.nn.LayerNorm(8), norm_position="post")
    assert torch.allclose(pre(x), x + branch(torch.nn.functional.layer_norm(x, (8,))), atol=1e-5)
    assert torch.allclose(post(x), torch.nn.functional.layer_norm(x + branch(x), (8,)), atol=1e-5)
    with pytest.raises(ModelConfigError, match="drop_path"):
        Residual(branch, 8, merge="none", drop_path=0.1)


@pytest.mark.parametrize("name", ["transformer3", "plain_transformer3", "rezero_transformer2", "lstm2", "plain_lstm2",
                                  "gru3", "plain_gru2"])
def test_sequence_models_map_tokens_to_logits_and_round_trip_options(name):
    model = reslab.create_model(name, num_classes=20, width=16)
    logits = model(_tokens())
    assert logits.shape == (2, 12, 20)
    again = reslab.create_model(name, num_classes=20, **model.model_options)
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    assert model.is_plain == name.startswith("plain")
    assert all(b.residual != model.is_plain for _, b in named_blocks(model))
    assert reslab.models.model_info(name).family == "sequence"


def test_transformer_is_causal_and_checks_its_options():
    torch.manual_seed(0)
    model = reslab.create_model("transformer2", num_classes=20, width=16, context=12).eval()
    x = _tokens()
    changed = x.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 20
    a, b = model(x), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6) and not torch.allclose(a[:, 7:], b[:, 7:])
    with pytest.raises(ModelConfigError, match="context of 12"):
        model(_tokens(length=13))
    with pytest.raises(ModelConfigError, match="divisible by heads"):
        reslab.create_model("transformer2", width=18, heads=4)
    with pytest.raises(ModelConfigError, match="merge must be one of"):
        reslab.create_model("transformer2", merge="concat")
    with pytest.raises(ModelConfigError, match="unknown option"):
        reslab.create_model("lstm2", heads=4)
    assert len(named_blocks(model)) == 4  # attention and MLP unit per layer


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_mlp_depth_is_its_weight_layers(norm):
    model = reslab.create_model("resmlp7", num_classes=10, in_chans=1, norm=norm)
    assert len(weight_layers(model)) == 7
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    wide = reslab.create_model("plain_mlp4", num_classes=3, in_chans=3, image_size=[4, 6])
    assert wide(torch.randn(2, 3, 4, 6)).shape == (2, 3)
    with pytest.raises(ModelConfigError, match="at least 3 weight layers"):
        reslab.create_model("resmlp2")
    with pytest.raises(ModelConfigError, match="norm must be one of"):
        reslab.create_model("resmlp5", norm="layer")


@pytest.mark.parametrize("name", ["transformer2", "lstm1"])
def test_sequence_models_learn_a_repeating_pattern(name):
    torch.manual_seed(0)
    model = reslab.create_model(name, num_classes=5, width=32)
    pattern = torch.tensor([0, 1, 2, 3, 4, 3, 2, 1] * 5)
    x, y = pattern[:-1].repeat(4, 1), pattern[1:].repeat(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, 5), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_rank_collapses_without_skips():
    torch.manual_seed(0)
    x = _tokens(batch=4, length=32, vocab=30)
    residual = rank_collapse(reslab.create_model("transformer12", num_classes=30, width=32), x)
    plain = rank_collapse(reslab.create_model("plain_transformer12", num_classes=30, width=32), x)
    assert residual.layers == plain.layers == list(range(13))
    assert plain.relative_residual[-1] < 0.1 < 0.9 < residual.relative_residual[-1]
    assert plain.relative_residual[-1] < plain.relative_residual[1]
