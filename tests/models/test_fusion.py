"""reslab.models.fusion: BN folding through torch's public fuse_conv_bn_weights, and the checked private
fused conv+ReLU."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.models import fusion
from reslab.models.fusion import fold_batch_norms, fold_network, fused_conv_relu, maybe_fuse_pointwise


class Block(nn.Module):
    """conv→BN→ReLU, then conv→BN (+ the input) → ReLU: both fusable patterns, one conv with a bias."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def _model() -> nn.Module:
    model = Block().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_(1, 0.3)
            bn.bias.normal_(0, 0.2)
    return model


@pytest.fixture
def fresh_check():
    """Each test sees (and leaves) an unchecked fused_conv_relu, so patched ops do not leak."""
    fused_conv_relu.cache_clear()
    yield
    fused_conv_relu.cache_clear()


def _folded(model):
    _, pairs = fold_network(copy.deepcopy(model))
    return fold_batch_norms(model), pairs


def test_folding_uses_the_public_fusion_and_matches_the_unfolded_network():
    model = _model()
    network, pairs = _folded(model)
    assert model.conv1.bias is None and hasattr(model, "bn1")  # the model itself is left as it was
    assert [(p.conv, p.bn, p.conv_has_bias) for p in pairs] == [("conv1", "bn1", False), ("conv2", "bn2", True)]
    for pair in pairs:
        conv, bn = getattr(model, pair.conv), getattr(model, pair.bn)
        expected = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        assert torch.equal(getattr(network, pair.conv).weight, expected.weight)
        assert torch.equal(getattr(network, pair.conv).bias, expected.bias)
    x = torch.randn(3, 4, 6, 6)
    with torch.inference_mode():
        assert torch.allclose(network(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch build")
def test_fused_op_is_used_when_it_agrees(fresh_check):
    fn = fused_conv_relu()
    assert fn is not fusion.public_conv_relu and fused_conv_relu() is fn  # checked once, then cached
    network, _ = _folded(_model())
    x = torch.randn(5, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    fused, count = maybe_fuse_pointwise(network.to(memory_format=torch.channels_last), x[:2])
    assert count == 2
    with torch.inference_mode():
        assert torch.allclose(fused(x), network(x), rtol=1e-5, atol=1e-6)


def _falls_back(match: str):
    with pytest.warns(RuntimeWarning, match=match):
        assert fused_conv_relu() is fusion.public_conv_relu
    network, _ = _folded(_model())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is given once per process, not per network
        assert maybe_fuse_pointwise(network, torch.randn(2, 4, 6, 6)) == (network, 0)


def test_falls_back_when_the_op_disagrees(fresh_check, monkeypatch):
    class Wrong:
        def __call__(self, x, weight, bias, *args):
            return fusion.public_conv_relu(x, weight, bias, (2, 2), (1, 1), (1, 1), 1) + 1.0

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", Wrong())
    _falls_back("differs from the public path")


def test_falls_back_when_the_op_fails(fresh_check, monkeypatch):
    def broken(*args):
        raise RuntimeError("no primitive")

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", broken)
    _falls_back("no primitive")


def test_falls_back_without_onednn(fresh_check, monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    _falls_back("not available")


def test_public_path_is_relu_of_conv():
    x, w, b, r = torch.randn(2, 3, 7, 7), torch.randn(5, 3, 3, 3), torch.randn(5), torch.randn(2, 5, 4, 4)
    out = fusion.public_conv_relu(x, w, b, (2, 2), (1, 1), (1, 1), 1, other=r)
    assert torch.equal(out, torch.relu(F.conv2d(x, w, b, 2, 1) + r))
