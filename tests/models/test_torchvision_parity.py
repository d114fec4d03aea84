"""torchvision's ResNets load into ours unchanged (strict) and compute the same function."""

import pytest
import torch

import reslab

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"]
)
def test_torchvision_state_dict_loads_and_outputs_match(name):
    g = torch.Generator().manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)  # random init, no download
    with torch.no_grad():
        # Non-trivial BN statistics and affine parameters, so a misplaced or missing BN shows.
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0, generator=g)
                module.bias.uniform_(-0.2, 0.2, generator=g)
                module.running_mean.uniform_(-0.2, 0.2, generator=g)
                module.running_var.uniform_(0.5, 1.5, generator=g)
    ours = reslab.create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=g)
    reference.eval(), ours.eval()
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert expected.abs().max() > 0.1  # a real signal, not all zeros
    assert (actual - expected).abs().max() <= 1e-4
