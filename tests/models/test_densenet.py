"""DenseNet-BC (reslab.models.densenet): sizes, shapes, options, errors, training, registry."""

import pytest
import torch
import torch.nn.functional as F

import reslab
from reslab.errors import ModelConfigError
from reslab.models import model_info, weight_layers
from reslab.models.densenet import MATCHED_TO_RESNET20, DenseLayer


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_densenet_bc_100_12_has_the_papers_parameter_count():
    model = reslab.create_model("densenet_bc_100_12")
    assert _params(model) == 769_162  # measured; the paper's "0.8M"
    assert abs(_params(model) - 0.8e6) / 0.8e6 < 0.05
    # He et al.'s depth: 1 first conv + 48 dense layers x 2 convs + 2 transition convs + 1 linear.
    assert len(weight_layers(model)) == 100
    assert len(model.named_dense_layers()) == 48
    assert all(isinstance(m, DenseLayer) for _, m in model.named_dense_layers())
    assert model.model_name == "densenet_bc_100_12"
    assert model.is_plain is False
    assert model.model_options == {"dropout": 0.0, "compression": 0.5, "efficient": False}


def test_matched_to_resnet20_on_the_digits():
    resnet20 = _params(reslab.create_model("resnet20", num_classes=10, in_chans=1))
    matched = _params(reslab.create_model(MATCHED_TO_RESNET20, num_classes=10, in_chans=1))
    assert (resnet20, MATCHED_TO_RESNET20, matched) == (269_434, "densenet_bc_34_17", 271_665)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8)])
def test_forward_shapes(shape):
    model = reslab.create_model("densenet_bc_40_12", num_classes=10, in_chans=shape[1]).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    # 2k + 3*6*k channels, compressed by 0.5 twice: 24 -> 96 -> 48 -> 120 -> 60 -> 132.
    assert features.shape == (2, 132, shape[2] // 4, shape[3] // 4)
    assert logits.shape == (2, 10)
    assert torch.allclose(model.forward_head(features), logits)


@pytest.mark.parametrize("name", ["densenet_bc_41_12", "densenet_bc_4_12", "densenet_bc_0_12", "densenet_bc_40_0"])
def test_bad_depth_or_growth_says_the_rule(name):
    with pytest.raises(ModelConfigError, match=r"6n\+4"):
        reslab.create_model(name)


@pytest.mark.parametrize("options, message", [
    ({"shortcut": "A"}, "unknown option.*shortcut.*dropout.*compression.*efficient"),
    ({"dropout": 1.0}, "dropout must be"),
    ({"dropout": "0.1"}, "dropout must be"),
    ({"compression": 0.0}, "compression must be"),
    ({"compression": 1.5}, "compression must be"),
    ({"efficient": "false"}, "efficient must be True or False"),
])
def test_bad_options(options, message):
    with pytest.raises(ModelConfigError, match=message):
        reslab.create_model("densenet_bc_40_12", **options)


def test_bad_classes_or_channels():
    with pytest.raises(ModelConfigError, match="num_classes"):
        reslab.create_model("densenet_bc_40_12", num_classes=0)
    with pytest.raises(ModelConfigError, match="in_chans"):
        reslab.create_model("densenet_bc_40_12", in_chans=0)


def test_model_options_round_trip():
    model = reslab.create_model("densenet_bc_22_8", in_chans=1, dropout=0.2, compression=0.75, efficient=True)
    assert model.model_options == {"dropout": 0.2, "compression": 0.75, "efficient": True}
    again = reslab.create_model(model.model_name, in_chans=1, **model.model_options)
    assert again.model_options == model.model_options
    assert _params(again) == _params(model)
    assert [k for k in again.state_dict()] == [k for k in model.state_dict()]


def test_init():
    model = reslab.create_model("densenet_bc_22_8")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    assert torch.all(model.fc.bias == 0)


def test_efficient_gives_the_same_outputs_gradients_and_statistics():
    torch.manual_seed(1)
    plain = reslab.create_model("densenet_bc_22_8", in_chans=1, dropout=0.1)
    efficient = reslab.create_model("densenet_bc_22_8", in_chans=1, dropout=0.1, efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    losses = []
    for model in (plain, efficient):
        torch.manual_seed(2)  # the same dropout masks
        loss = F.cross_entropy(model.train()(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
    # The recomputation in backward does not update the BN statistics a second time.
    for (name, b), c in zip(plain.named_buffers(), efficient.buffers()):
        assert torch.allclose(b.float(), c.float(), atol=1e-6), name


def test_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    model = reslab.create_model("densenet_bc_22_8", num_classes=10, in_chans=1).train()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_listed_and_built_by_the_registry():
    names = reslab.list_models("densenet*")
    assert "densenet_bc_100_12" in names and MATCHED_TO_RESNET20 in names
    info = model_info("densenet_bc_100_12")
    assert info.default_num_classes == 10 and info.default_input_size == 32
    assert reslab.create_model("densenet_bc_100_12").num_classes == 10
