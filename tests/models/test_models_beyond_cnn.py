"""Models beyond the CNNs, through ``reslab.create_model``: transformer, LSTM/GRU stacks, residual MLPs,
the ``Residual`` wrapper they share, and the rank-collapse analysis."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reslab
from reslab.analysis.rank_collapse import RankCollapseResult, rank_collapse
from reslab.errors import AnalysisError, ModelConfigError
from reslab.models import blocks_removed, model_info, named_blocks, weight_layers
from reslab.models.residual import Residual

SEQUENCE = ["transformer2", "plain_transformer2", "rezero_transformer2", "lstm2", "plain_lstm2", "gru2", "plain_gru2"]
VECTOR = ["resmlp5", "plain_mlp5"]


def _tokens(batch=2, length=10, vocab=20, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def _small(name):
    if name in VECTOR:
        return reslab.create_model(name, num_classes=7, in_chans=1, width=16, image_size=(6, 5))
    return reslab.create_model(name, num_classes=20, width=16)


# -- every family: shapes, attributes, options round trip ------------------------------------------
@pytest.mark.parametrize("name", SEQUENCE + VECTOR)
def test_shapes_attributes_and_options_round_trip(name):
    torch.manual_seed(0)
    model = _small(name)
    if name in VECTOR:
        x, expected = torch.randn(3, 1, 6, 5), (3, 7)
    else:
        x, expected = _tokens(), (2, 10, 20)
    assert model(x).shape == expected
    assert model.model_name == name
    assert model.is_plain == name.startswith("plain")
    assert model_info(name).family == ("vector" if name in VECTOR else "sequence")
    json.dumps(model.model_options)  # JSON-able, defaults filled in
    again = reslab.create_model(name, num_classes=model.head.out_features, in_chans=1, **model.model_options)
    assert again.model_options == model.model_options
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))
    blocks = named_blocks(model)
    assert blocks and all(block.residual != model.is_plain for _, block in blocks)


def test_defaults_and_listed_examples():
    model = reslab.create_model("transformer2")
    assert model.model_options == {"width": 128, "heads": 4, "context": 256, "merge": "sum", "norm": "pre",
                                   "dropout": 0.0, "attention_dropout": 0.0}
    assert model.head.out_features == 96
    assert reslab.create_model("rezero_transformer2").model_options["merge"] == "rezero"
    assert reslab.create_model("gru1").model_options == {"width": 128, "dropout": 0.0, "merge": "sum"}
    mlp = reslab.create_model("resmlp3", in_chans=1)
    assert mlp.model_options == {"width": 64, "norm": "batch", "activation": "relu", "dropout": 0.0,
                                 "image_size": [8, 8]}
    listed = set(reslab.list_models())
    assert {"transformer2", "transformer4", "transformer8", "plain_transformer2", "plain_transformer4",
            "plain_transformer8", "lstm2", "lstm4", "lstm8", "plain_lstm2", "plain_lstm4", "plain_lstm8", "gru4",
            "plain_gru4", "resmlp10", "resmlp20", "resmlp50", "plain_mlp10", "plain_mlp20", "plain_mlp50"} <= listed


@pytest.mark.parametrize("name, options, message", [
    ("transformer2", {"depth_scale": 2}, r"transformer2: unknown option\(s\) depth_scale; options are: width"),
    ("transformer2", {"merge": "concat"}, "merge must be one of sum, none, highway, rezero, got 'concat'"),
    ("transformer2", {"norm": "sandwich"}, "norm must be one of pre, post"),
    ("transformer2", {"width": 18, "heads": 4}, "width 18 must be divisible by heads 4"),
    ("transformer2", {"dropout": 1.5}, r"dropout must be a probability in \[0, 1\)"),
    ("transformer2", {"attention_dropout": -0.1}, r"attention_dropout must be a probability in \[0, 1\)"),
    ("transformer2", {"context": 0}, "context must be a positive integer"),
    ("transformer0", {}, "depth must be a positive integer"),
    ("plain_transformer2", {"merge": "sum"}, "fixes merge='none'"),
    ("rezero_transformer2", {"merge": "sum"}, "fixes merge='rezero'"),
    ("lstm2", {"heads": 4}, r"lstm2: unknown option\(s\) heads"),
    ("plain_gru2", {"merge": "highway"}, "fixes merge='none'"),
    ("gru2", {"width": 0}, "width must be a positive integer"),
    ("resmlp2", {}, "at least 3 weight layers"),
    ("resmlp5", {"norm": "layer"}, "norm must be one of batch, none, got 'layer'"),
    ("resmlp5", {"activation": "gelu"}, "activation must be one of relu, tanh, sigmoid"),
    ("plain_mlp5", {"image_size": (8, 0)}, r"image_size must be \(H, W\)"),
])
def test_invalid_options_name_the_model_and_the_option(name, options, message):
    with pytest.raises(ModelConfigError, match=message):
        reslab.create_model(name, **options)


def test_inputs_that_do_not_fit_are_clear_errors():
    transformer = reslab.create_model("transformer1", num_classes=20, width=16, context=8)
    with pytest.raises(ModelConfigError, match="more than its context of 8"):
        transformer(_tokens(length=9))
    with pytest.raises(ModelConfigError, match="int64 tokens"):
        transformer(torch.randn(2, 8))
    with pytest.raises(ModelConfigError, match="int64 tokens"):
        reslab.create_model("lstm1", num_classes=20, width=8)(torch.randn(2, 8))
    mlp = reslab.create_model("resmlp3", in_chans=1, width=8)
    with pytest.raises(ModelConfigError, match=r"C·H·W = 64 .*image_size"):
        mlp(torch.randn(2, 3, 8, 8))
    assert reslab.create_model("resmlp3", in_chans=3, width=8, image_size=[4, 4])(torch.randn(2, 3, 4, 4)).shape == (2, 10)


# -- the Residual wrapper ------------------------------------------------------------------------
@pytest.mark.parametrize("merge", ["sum", "none", "highway", "rezero"])
def test_residual_merges_and_lesion(merge):
    torch.manual_seed(0)
    unit = Residual(nn.Linear(8, 8), 8, merge=merge)
    x = torch.randn(3, 8)
    f = unit.branch(x)
    t = torch.sigmoid(torch.tensor(-2.0))
    expected = {"sum": x + f, "none": f, "rezero": x, "highway": t * f + (1 - t) * x}[merge]
    assert torch.allclose(unit(x), expected, atol=1e-6)
    assert unit.residual == (merge != "none") and unit.changes_shape is False
    assert ("gate" in dict(unit.named_children())) == (merge == "highway")
    assert [name for name, _ in weight_layers(unit)] == ["branch"]  # the highway gate is not counted
    seen = []
    unit.branch_output.register_forward_hook(lambda module, inputs, output: seen.append(output))
    unit(x)
    assert torch.allclose(seen[0], f)  # the hook sees F(x)
    unit.branch_enabled = False
    assert torch.equal(unit(x), x)


def test_rezero_learns_alpha_and_highway_gate_depends_on_x():
    torch.manual_seed(0)
    unit = Residual(nn.Linear(4, 4), 4, merge="rezero")
    unit(torch.randn(2, 4)).pow(2).sum().backward()
    assert unit.alpha.grad is not None and unit.alpha.grad.abs() > 0
    highway = Residual(nn.Linear(4, 4), 4, merge="highway")
    assert torch.all(highway.gate.bias == -2.0)
    out = highway(torch.randn(2, 4))
    out.sum().backward()
    assert highway.gate.weight.grad.abs().sum() > 0  # the gate learns from x


def test_norm_position_pre_and_post_differ():
    torch.manual_seed(0)
    branch = nn.Linear(8, 8)
    x = torch.randn(4, 8) * 3 + 1
    pre = Residual(branch, 8, norm=nn.LayerNorm(8), norm_position="pre")
    post = Residual(branch, 8, norm=nn.LayerNorm(8), norm_position="post")
    assert torch.allclose(pre(x), x + branch(F.layer_norm(x, (8,))), atol=1e-5)
    assert torch.allclose(post(x), F.layer_norm(x + branch(x), (8,)), atol=1e-5)
    assert not torch.allclose(pre(x), post(x), atol=1e-3)
    torch.manual_seed(1)
    a = reslab.create_model("transformer2", num_classes=20, width=16, norm="pre").eval()
    torch.manual_seed(1)
    b = reslab.create_model("transformer2", num_classes=20, width=16, norm="post").eval()
    b.load_state_dict(a.state_dict())  # same weights, only the norms' positions differ
    assert not torch.allclose(a(_tokens()), b(_tokens()), atol=1e-4)


def test_residual_batchnorm_on_sequences_dropout_and_drop_path():
    torch.manual_seed(0)
    unit = Residual(nn.Identity(), 6, norm=nn.BatchNorm1d(6), norm_position="post")
    x = torch.randn(4, 5, 6) * 2 + 3
    y = unit.train()(x)
    assert y.shape == x.shape and torch.allclose(y.mean(dim=(0, 1)), torch.zeros(6), atol=1e-5)
    with pytest.raises(ModelConfigError, match="drop_path"):
        Residual(nn.Identity(), 6, merge="none", drop_path=0.1)
    with pytest.raises(ModelConfigError, match="merge must be one of"):
        Residual(nn.Identity(), 6, merge="mean")
    with pytest.raises(ModelConfigError, match="norm position"):
        Residual(nn.Identity(), 6, norm_position="middle")
    dropped = Residual(nn.Linear(6, 6), 6, drop_path=0.5)
    x = torch.randn(64, 6)
    assert torch.equal(dropped.eval()(x), x + dropped.branch(x))  # no drop-path at test time
    out = dropped.train()(x)
    kept = ~torch.isclose(out, x).all(dim=1)
    assert 10 < int(kept.sum()) < 54  # about half the samples keep their branch


# -- family specifics ----------------------------------------------------------------------------
@pytest.mark.parametrize("depth, norm", [(3, "batch"), (7, "none"), (12, "batch")])
def test_mlp_depth_counts_weight_layers(depth, norm):
    for name in (f"resmlp{depth}", f"plain_mlp{depth}"):
        model = reslab.create_model(name, in_chans=1, width=8, norm=norm)
        assert len(weight_layers(model)) == depth
        assert len(named_blocks(model)) == depth - 2


def test_transformer_is_causal():
    torch.manual_seed(0)
    for name in ("transformer2", "plain_transformer2"):
        model = reslab.create_model(name, num_classes=20, width=16).eval()
        x = _tokens(length=12)
        changed = x.clone()
        changed[:, 7] = (changed[:, 7] + 1) % 20
        a, b = model(x), model(changed)
        assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
        assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-6)


def test_layer_outputs_and_lesion_through_introspect():
    torch.manual_seed(0)
    for name in ("transformer3", "lstm3"):
        model = reslab.create_model(name, num_classes=20, width=16).eval()
        outputs = model.layer_outputs(_tokens())
        assert len(outputs) == 4 and all(o.shape == (2, 10, 16) for o in outputs)
        blocks = [n for n, _ in named_blocks(model)]
        assert len(blocks) == (6 if name.startswith("transformer") else 3)
        full = model(_tokens())
        with blocks_removed(model, blocks[-1:]):
            assert not torch.allclose(model(_tokens()), full)
        assert torch.equal(model(_tokens()), full)


@pytest.mark.parametrize("name", ["transformer4", "lstm2"])
def test_thirty_adam_steps_learn_a_repeating_pattern(name):
    torch.manual_seed(0)
    model = reslab.create_model(name, num_classes=6, width=32, heads=4) if name.startswith("transformer") \
        else reslab.create_model(name, num_classes=6, width=32)
    pattern = torch.tensor([0, 1, 2, 3, 4, 5, 4, 3, 2, 1] * 3)
    x, y = pattern[:-1].repeat(4, 1), pattern[1:].repeat(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).reshape(-1, 6), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -- rank collapse -------------------------------------------------------------------------------
def test_rank_collapses_without_skips_at_depth_12(tmp_path):
    x = _tokens(batch=4, length=32, vocab=30)
    torch.manual_seed(0)
    residual = rank_collapse(reslab.create_model("transformer12", num_classes=30, width=32), x)
    torch.manual_seed(0)
    plain = rank_collapse(reslab.create_model("plain_transformer12", num_classes=30, width=32), x)
    assert residual.model == "transformer12" and plain.model == "plain_transformer12"
    assert residual.layers == plain.layers == list(range(13))
    assert residual.relative_residual[0] == pytest.approx(plain.relative_residual[0])  # same embeddings
    # Seen at init: residual stays ≈ 0.97 at every layer; plain falls 0.97 → 0.44 → ... → 0.003.
    assert plain.relative_residual[-1] < 0.05 < 0.9 < residual.relative_residual[-1]
    assert plain.relative_residual[-1] < plain.relative_residual[6] < plain.relative_residual[1]
    saved = residual.save(tmp_path)
    assert saved.name == "rank_collapse.json"
    assert RankCollapseResult.load(saved) == residual


def test_rank_collapse_checks_its_inputs():
    model = reslab.create_model("transformer1", num_classes=20, width=16)
    with pytest.raises(AnalysisError, match="int64 tokens"):
        rank_collapse(model, torch.randn(2, 5))
    with pytest.raises(AnalysisError, match="layer_outputs"):
        rank_collapse(reslab.create_model("resmlp3", in_chans=1, width=8), _tokens())
    model.train()
    rank_collapse(model, _tokens())
    assert model.training  # the mode is restored


def test_attention_dropout_is_separate_from_branch_dropout():
    # Branch dropout leaves the attention weights alone (SDPA keeps its fused kernel); attention
    # dropout is its own option and acts only in training.
    branch_only = reslab.create_model("transformer1", width=16, heads=2, context=8, dropout=0.3)
    assert branch_only.layers[0].attention_unit.branch.dropout == 0.0
    attention_only = reslab.create_model("transformer1", width=16, heads=2, context=8, attention_dropout=0.2)
    assert attention_only.layers[0].attention_unit.branch.dropout == 0.2
    tokens = torch.randint(0, 96, (2, 8), generator=torch.Generator().manual_seed(0))
    attention_only.eval()
    assert torch.equal(attention_only(tokens), attention_only(tokens))
