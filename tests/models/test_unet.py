"""U-Nets on reslab encoders: ``unet_{encoder}`` shapes, feature_info-driven decoder, twins, errors."""

from __future__ import annotations

import pytest
import torch

import reslab
from reslab.errors import ModelConfigError
from reslab.models.unet import UNet


@pytest.mark.parametrize("name, size, channels, reductions", [
    ("unet_resnet18", (64, 96), [64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    ("unet_resnet50", (64, 64), [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32]),
    ("unet_resnet20", (36, 32), [16, 32, 64], [1, 2, 4]),  # CIFAR: layer1 (not the stem) is the full-size skip
])
def test_output_at_input_resolution(name, size, channels, reductions):
    model = reslab.create_model(name, num_classes=5)
    assert isinstance(model, UNet) and model.model_name == name and not model.is_plain
    assert model.feature_info.channels() == channels and model.feature_info.reduction() == reductions
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)


def test_decoder_follows_feature_info():
    model = reslab.create_model("unet_resnet50", num_classes=3)
    assert model.decoder_channels == (256, 128, 64, 32, 16)  # segmentation_models_pytorch's default
    info = model.feature_info
    # Each block: the previous width + the skip at the reduction it outputs (none at full size).
    expected_in = [2048 + 1024, 256 + 512, 128 + 256, 64 + 64, 32 + 0]
    assert [block.conv1[0].in_channels for block in model.decoder] == expected_in
    assert [block.skip_channels for block in model.decoder] == [*info.channels()[-2::-1], 0]
    assert model.head.in_channels == 16 and model.head.out_channels == 3 and model.head.kernel_size == (3, 3)

    cifar = reslab.create_model("unet_resnet20", num_classes=2)
    assert cifar.encoder.feature_info.out_indices == (1, 2, 3) and cifar.decoder_channels == (32, 16)
    assert [block.conv1[0].in_channels for block in cifar.decoder] == [64 + 32, 32 + 16]

    custom = reslab.create_model("unet_resnet18", num_classes=2, decoder_channels=(64, 32, 32, 16, 8))
    assert custom.decoder_channels == (64, 32, 32, 16, 8) and custom.head.in_channels == 8
    assert custom.model_options["decoder_channels"] == [64, 32, 32, 16, 8]


def test_plain_twin_is_one_option_away_and_encoder_names_are_the_classifiers():
    assert {"unet_resnet18", "unet_plain18", "unet_resnet34", "unet_plain34", "unet_resnet50"} <= set(
        reslab.list_models("unet_*"))
    torch.manual_seed(0)
    twin = reslab.create_model("unet_plain18", num_classes=2)
    torch.manual_seed(0)
    same = reslab.create_model("unet_resnet18", num_classes=2, shortcut="none")
    assert twin.is_plain and same.is_plain
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), same.state_dict().values()))
    residual = reslab.create_model("unet_resnet18", num_classes=2)
    assert set(residual.state_dict()) - set(twin.state_dict()) == {
        k for k in residual.state_dict() if ".downsample." in k}

    classifier = reslab.create_model("resnet18")
    weights = {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    residual.encoder.load_state_dict(weights)  # a classifier's weights load into the encoder unchanged
    pretrained = reslab.create_model("unet_resnet20", num_classes=2, encoder_pretrained="cifar10")
    shipped = reslab.create_model("resnet20", pretrained="cifar10").state_dict()
    assert torch.equal(pretrained.encoder.conv1.weight, shipped["conv1.weight"]) and pretrained.training


def test_gradients_reach_the_first_encoder_layer():
    model = reslab.create_model("unet_cifar_resnet8", num_classes=3, in_chans=1)
    out = model(torch.randn(2, 1, 16, 16))
    torch.nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 16, 16))).backward()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0


def test_errors_say_what_works():
    model = reslab.create_model("unet_resnet18", num_classes=2)
    with pytest.raises(ModelConfigError, match=r"input 70×64 does not fit: .*multiples of 32.*32, 64, 96, 128.*64×64"):
        model(torch.randn(1, 3, 70, 64))
    with pytest.raises(ModelConfigError, match="multiples of 4"):
        reslab.create_model("unet_resnet20")(torch.randn(1, 3, 30, 32))
    with pytest.raises(ModelConfigError, match="encoder 'resnet19' is not a model"):
        reslab.create_model("unet_resnet19")
    with pytest.raises(ModelConfigError, match="must be a ResNet-family model.*'transformer4'"):
        reslab.create_model("unet_transformer4")
    with pytest.raises(ModelConfigError, match="decoder_channels must be 5 positive integers"):
        reslab.create_model("unet_resnet18", decoder_channels=(64, 32))
    with pytest.raises(ModelConfigError, match="unknown option.*foo.*decoder_channels, encoder_pretrained"):
        reslab.create_model("unet_resnet18", foo=1)
    with pytest.raises(ModelConfigError, match="features_only"):
        reslab.create_model("unet_resnet18", features_only=True)
