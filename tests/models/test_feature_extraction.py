"""timm's feature-extraction conventions on every ResNet-family model."""

from __future__ import annotations

import pytest
import torch

import reslab
from reslab.errors import ModelConfigError


def test_resnet50_features_match_timms_description():
    model = reslab.create_model("resnet50", features_only=True).eval()
    info = model.feature_info
    assert info.channels() == [64, 256, 512, 1024, 2048]
    assert info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name() == ["bn1", "layer1", "layer2", "layer3", "layer4"]
    assert info.channels(-1) == 2048 and len(info) == 5 and info[0] == {"num_chs": 64, "reduction": 2, "module": "bn1"}
    with torch.no_grad():
        features = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape[1:]) for f in features] == [(c, 224 // r, 224 // r) for c, r in
                                                      zip(info.channels(), info.reduction())]
    assert not any(key.startswith("fc.") for key in model.state_dict())


@pytest.mark.parametrize("name, size", [("resnet20", 32), ("plain20", 32), ("preact_resnet18", 64), ("wrn_16_4", 32),
                                        ("resnext50_32x4d", 64), ("resnet18", 64)])
def test_every_family_member_returns_the_maps_its_feature_info_describes(name, size):
    options = {"attention": "se"} if name == "resnet18" else {}
    model = reslab.create_model(name, features_only=True, out_indices=(1, -1), **options).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, size, size))
    assert len(features) == 2
    for feature, channels, reduction in zip(features, model.feature_info.channels(), model.feature_info.reduction()):
        assert feature.shape == (2, channels, size // reduction, size // reduction)


def test_the_last_feature_map_is_forward_features_of_the_full_model():
    full = reslab.create_model("preact_resnet18").eval()
    extractor = reslab.create_model("preact_resnet18", features_only=True, out_indices=(4,)).eval()
    extractor.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(extractor(x)[0], full.forward_features(x))
        # forward_features stays unpooled; forward_head(pre_logits=True) pools.
        assert full.forward_features(x).shape == (2, 512, 2, 2)
        assert full.forward_head(full.forward_features(x), pre_logits=True).shape == (2, 512)


def test_num_classes_zero_gives_pooled_features_and_reset_classifier_swaps_the_head():
    torch.manual_seed(0)
    model = reslab.create_model("resnet20", num_classes=0).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        pooled = model(x)
        assert pooled.shape == (3, 64)
        model.reset_classifier(7)
        assert model(x).shape == (3, 7) and model.num_classes == 7
        assert torch.allclose(model.forward_head(model.forward_features(x), pre_logits=True), pooled)
    # The shipped weights work as a backbone too.
    backbone = reslab.create_model("resnet20", pretrained="cifar10", num_classes=0)
    assert backbone(x).shape == (3, 64)
    assert reslab.create_model("resnet20", pretrained="cifar10", features_only=True).feature_info.channels() == \
        [16, 16, 32, 64]


def test_bad_feature_options_are_refused_clearly():
    with pytest.raises(ModelConfigError, match=r"out_indices \(1, 5\) has 5, but the model has 4 feature levels"):
        reslab.create_model("resnet20", features_only=True, out_indices=(1, 5))
    with pytest.raises(ModelConfigError, match="out_indices is for features_only=True"):
        reslab.create_model("resnet20", out_indices=(1,))
    with pytest.raises(ModelConfigError, match="features_only is for the ResNet family"):
        reslab.create_model("densenet_bc_40_12", features_only=True)
    with pytest.raises(ModelConfigError, match="num_classes must be an integer >= 0"):
        reslab.create_model("resnet20", num_classes=-1)
    with pytest.raises(ModelConfigError, match="no classifier to reset"):
        reslab.create_model("resnet20", features_only=True).reset_classifier(3)
