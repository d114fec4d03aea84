"""A block is y = merge(F(x), shortcut(x)); a ResNet records its name and options; generic names resolve."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reslab
from reslab.models import NetworkSpec, ResNet, model_info, named_blocks
from reslab.models.blocks import HighwayMerge, NoMerge, SumMerge
from reslab.models.registry import GENERIC_NAMES, cifar_spec


# -- merges and attention ----------------------------------------------------------------------
@pytest.mark.parametrize("name, merge", [("resnet20", SumMerge), ("plain20", NoMerge), ("highway20", HighwayMerge)])
def test_every_block_has_its_merge(name, merge):
    model = reslab.create_model(name)
    for _, block in named_blocks(model):
        assert type(block.merge) is merge
        assert isinstance(block.attention, nn.Identity)
        assert (block.gate is not None) == (merge is HighwayMerge)
        if block.gate is not None:
            assert block.merge.gate is block.gate
    # Merges hold no parameters: the state dict keeps its keys (a highway gate is "….gate.weight").
    keys = set(model.state_dict())
    assert not any(".merge" in key or ".attention" in key for key in keys)
    assert ("layer1.0.gate.weight" in keys) == (merge is HighwayMerge)
    if merge is HighwayMerge:  # the merge refers to the block's own gate, in copies too
        copied = copy.deepcopy(model).layer2[0]
        assert copied.merge.gate is copied.gate and copied.gate is not model.layer2[0].gate


def test_attention_modules_sit_on_the_branch():
    block = reslab.create_model("se_resnet18").layer1[0]
    assert type(block.attention).__name__ == "SqueezeExcitation"


def test_preact_block_with_a_projection_feeds_it_the_preactivated_input():
    torch.manual_seed(0)
    model = reslab.create_model("preact_resnet110", gated=True).eval()
    block = model.layer2[0]  # 16 -> 32 channels, stride 2: a projection
    assert block.shortcut_preactivated and block.downsample is not None
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 16, 8, 8)
        pre = F.relu(block.bn1(x))
        fx = block.conv2(F.relu(block.bn2(block.conv1(pre))))
        t = torch.sigmoid(block.gate(pre))
        expected = t * fx + (1 - t) * block.downsample(pre)
        torch.testing.assert_close(block(x), expected, rtol=1e-6, atol=1e-6)
    identity_block = model.layer2[1]
    assert not identity_block.shortcut_preactivated  # an identity shortcut carries x itself


# -- name and options ------------------------------------------------------------------------
def test_a_directly_built_resnet_records_its_name_and_options():
    model = ResNet(cifar_spec(20), num_classes=10, shortcut="A", dropout=0.1)
    assert model.model_name == "ResNet-20"
    assert model.model_options == {"shortcut": "A", "gated": False, "attention": None, "dropout": 0.1,
                                   "drop_path": 0.0, "zero_init_last": False, "activation_checkpointing": False,
                                   "shortcut_pad": "back"}
    named = ResNet(cifar_spec(20), name="mine", model_options={"shortcut": "B"})
    assert named.model_name == "mine" and named.model_options == {"shortcut": "B"}
    with pytest.raises(ValueError, match="shortcut"):
        ResNet(cifar_spec(20), shortcut="A", model_options={"shortcut": "B"})
    with pytest.raises(ValueError, match="widen"):
        ResNet(cifar_spec(20), model_options={"widen": 2})


def test_create_model_records_the_options_given_and_the_names_defaults():
    assert reslab.create_model("resnet20").model_options == {"shortcut": "A"}
    assert reslab.create_model("highway20", dropout=0.0).model_options == {"shortcut": "A", "gated": True,
                                                                           "dropout": 0.0}
    assert reslab.create_model("se_resnet18").model_options == {"shortcut": "B", "attention": "se"}
    model = reslab.create_model("cifar_resnet29", block="bottleneck", shortcut="B")
    assert model.model_name == "cifar_resnet29" and model.model_options == {"shortcut": "B"}
    assert isinstance(model.spec, NetworkSpec) and model.spec.block == "bottleneck"


# -- generic names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, shortcut, block", [("cifar_resnet38", "A", "basic"), ("cifar_plain14", "none", "basic"),
                                                   ("cifar_preact_resnet20", "B", "basic"), ("wrn_10_2", "B", "basic")])
def test_generic_names_resolve_to_an_entry_with_defaults(name, shortcut, block):
    entry = model_info(name)
    assert entry.name == name and entry.family == "cifar" and entry.defaults == {"shortcut": shortcut}
    assert entry.spec_fn().block == block
    assert [g.resolve(name) is not None for g in GENERIC_NAMES].count(True) == 1
    assert reslab.create_model(name).model_options == {"shortcut": shortcut}


def test_generic_cifar_names_take_block_and_wide_names_do_not():
    assert model_info("cifar_resnet29").spec_fn(block="bottleneck").num_blocks == 9
    assert model_info("cifar_resnet29").spec_options == ("block",)
    assert model_info("wrn_10_2").spec_options == () and model_info("resnet20").spec_options == ()
    with pytest.raises(reslab.ReslabError, match="only for cifar_"):
        reslab.create_model("wrn_10_2", block="bottleneck")
    assert all(g.resolve("resnet20") is None for g in GENERIC_NAMES)
