"""Every registered model trains on tiny inputs; the registry's errors explain themselves."""

import re

import pytest
import torch
import torch.nn.functional as F

import reslab
from reslab.errors import ModelConfigError
from reslab.models import model_info, weight_layers

# The ResNet-spec family; transformers, recurrent stacks, MLPs and DenseNet-BC (their own
# builders) are tested in test_residual_families.py and test_densenet.py.
ALL_MODELS = [name for name in reslab.list_models() if model_info(name).model_family is None]


def test_registry_lists_the_family():
    names = set(ALL_MODELS)
    for expected in ("resnet20", "resnet1202", "plain20", "plain56", "plain110", "plain18", "plain34",
                     "resnet18", "resnet152", "preact_resnet164", "preact_resnet1001", "wrn_28_10",
                     "wrn_16_8", "wide_resnet50_2", "resnext50_32x4d", "highway56", "se_resnet50", "cbam_resnet50"):
        assert expected in names
    assert reslab.list_models("plain*") == [n for n in reslab.list_models() if n.startswith("plain")]
    assert {"plain_transformer4", "plain_lstm4", "plain_mlp50"} <= set(reslab.list_models("plain_*"))
    assert reslab.list_models("plain1*")[:3] == ["plain18", "plain101", "plain110"]  # natural order


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_tiny_grayscale(name):
    """A grayscale batch of 2: right output shape, finite loss, a gradient for every parameter.

    8×8 for CIFAR models; 32×32 for ImageNet ones (8×8 works too, but their /32 stem and stages
    leave 1×1 maps where BN sees two values per channel, and backward through 100+ such BNs
    overflows even with shortcuts).
    """
    torch.manual_seed(0)
    model = reslab.create_model(name, num_classes=5, in_chans=1)
    assert isinstance(model, torch.nn.Module) and model.model_name == name
    model.train()
    side = 8 if model_info(name).family == "cifar" else 32
    x = torch.randn(2, 1, side, side)
    out = model(x)
    assert out.shape == (2, 5)
    loss = F.cross_entropy(out, torch.tensor([0, 3]))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    # The depth in the name is the number of main-path weight layers (WRN-d-k counts differently).
    if not name.startswith("wrn"):
        assert len(weight_layers(model)) == model.spec.depth == int(re.search(r"\d+", name)[0])
    if not model.is_plain:
        # Deep plain twins' gradients explode at init through their BN stack (plain101 reaches
        # inf/NaN on tiny maps, plain1202 on any): the degradation problem itself, not a defect.
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 5)  # eval: any size, batch 1


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "preact_resnet18", "wrn_16_4", "cifar_resnet8"])
def test_rgb_and_non_square_inputs(name):
    model = reslab.create_model(name, num_classes=3, in_chans=3).train()
    out = model(torch.randn(2, 3, 16, 12))
    assert out.shape == (2, 3)
    out.sum().backward()


def test_wrn_depth_counts_shortcut_convs_not_fc():
    """WRN-d-k: d = 6n + 4 counts every conv, the 3 shortcut projections included, and not the fc."""
    model = reslab.create_model("wrn_16_8")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16
    assert len(weight_layers(model)) == 14  # 13 main-path convs + fc


def test_generic_names_build_other_depths():
    assert len(weight_layers(reslab.create_model("cifar_resnet38"))) == 38
    assert len(weight_layers(reslab.create_model("cifar_plain14"))) == 14
    model = reslab.create_model("cifar_resnet29", block="bottleneck")
    assert len(weight_layers(model)) == 29 and model.spec.block == "bottleneck"
    assert reslab.create_model("cifar_preact_resnet20").spec.preact
    assert reslab.create_model("wrn_10_2").spec.stages[0].planes == 32
    assert model_info("cifar_resnet38").family == "cifar"


# -- errors ----------------------------------------------------------------------------------
def _message(excinfo) -> str:
    return str(excinfo.value)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ModelConfigError) as excinfo:
        reslab.create_model("resnet_56")
    msg = _message(excinfo)
    assert "resnet_56" in msg and "did you mean" in msg and "resnet56" in msg and "list_models" in msg
    with pytest.raises(ModelConfigError, match="wide_resnet50_2"):
        reslab.create_model("wide_resnet_50_2")


def test_invalid_cifar_depth_states_the_rule():
    with pytest.raises(ModelConfigError) as excinfo:
        reslab.create_model("cifar_resnet21")
    msg = _message(excinfo)
    assert "21" in msg and "6n+2" in msg and "9n+2" in msg and "20, 32, 44, 56, 110, 1202" in msg and "164" in msg
    with pytest.raises(ModelConfigError, match="9n\\+2"):
        reslab.create_model("cifar_resnet26", block="bottleneck")  # 24 is not a multiple of 9
    with pytest.raises(ModelConfigError, match="6n\\+4"):
        reslab.create_model("wrn_27_10")


def test_invalid_imagenet_depth_states_the_rule():
    with pytest.raises(ModelConfigError) as excinfo:
        reslab.create_model("resnet19")
    msg = _message(excinfo)
    assert "resnet19" in msg and "18 or 34" in msg and "50, 101 or 152" in msg and "6n+2" in msg
    assert "resnet18" in msg and "resnet20" in msg  # the registered neighbours
    assert "cifar_resnet19" not in msg  # no hint towards a name that cannot build
    with pytest.raises(ModelConfigError, match="cifar_resnet38"):
        reslab.create_model("resnet38")  # a valid CIFAR depth that is not registered


@pytest.mark.parametrize(
    "options, words",
    [
        ({"shortcut": "D"}, ["shortcut", "A, B, C, none", "'D'"]),
        ({"attention": "eca"}, ["attention", "se", "cbam", "'eca'"]),
        ({"dropout": 1.5}, ["dropout", "[0, 1)", "1.5"]),
        ({"drop_path": -0.1}, ["drop_path", "[0, 1)"]),
        ({"gated": "yes"}, ["gated", "True or False", "'yes'"]),
        ({"zero_init_last": 1}, ["zero_init_last", "True or False"]),
        ({"widen": 2}, ["unknown option", "widen", "shortcut", "drop_path"]),
        ({"block": "bottleneck"}, ["block", "generic", "cifar_resnet164"]),
    ],
)
def test_bad_option_values(options, words):
    with pytest.raises(ModelConfigError) as excinfo:
        reslab.create_model("resnet20", **options)
    msg = _message(excinfo)
    assert msg.startswith("resnet20:")
    for word in words:
        assert word in msg


def test_options_that_contradict_a_plain_twin():
    with pytest.raises(ModelConfigError, match="drop_path.*shortcut"):
        reslab.create_model("plain20", drop_path=0.1)
    with pytest.raises(ModelConfigError, match="gated"):
        reslab.create_model("plain20", gated=True)


@pytest.mark.parametrize("kwargs, word", [({"in_chans": 0}, "in_chans"), ({"num_classes": -1}, "num_classes"),
                                          ({"num_classes": 2.5}, "num_classes")])
def test_bad_sizes(kwargs, word):
    with pytest.raises(ModelConfigError, match=word):
        reslab.create_model("resnet20", **kwargs)


def test_cli_shows_one_line_and_exits_2(capsys):
    from reslab.cli.main import main

    with pytest.raises(SystemExit) as excinfo:
        main(["profile", "resnet19"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab profile: error: unknown model 'resnet19'") and "\n" not in err
