"""Shortcuts, plain twins, highway gates, stochastic depth, zero-init, checkpointing, lesions."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import reslab
from reslab.errors import ModelConfigError
from reslab.models import blocks_removed, named_blocks, removable_blocks
from reslab.models.blocks import GATE_BIAS_INIT
from reslab.models.layers import DropPath, ZeroPadShortcut


def _responds(model: nn.Module, size: int, chans: int = 3) -> bool:
    """Whether two different inputs give different outputs."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, chans, size, size, generator=g), torch.randn(2, chans, size, size, generator=g)
    with torch.no_grad():
        return not torch.allclose(model(a), model(b), atol=1e-6)


# -- plain twins -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "residual, plain, size",
    [("resnet20", "plain20", 16), ("resnet18", "plain18", 32),
     ("preact_resnet110", "cifar_preact_resnet20", 16), ("resnet50", "plain50", 32)],
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_plain_twin_has_no_additions(residual, plain, size, mode):
    """With every branch's last BN γ zeroed (or a pre-act branch's last conv), a residual net
    still passes its input through the shortcuts; a plain net outputs a constant."""
    options = {"shortcut": "none"} if plain.startswith("cifar_preact") else {}
    res = reslab.create_model(residual, zero_init_last=True)
    twin = reslab.create_model(plain, zero_init_last=True, **options)
    assert twin.is_plain and not res.is_plain
    for model in (res, twin):
        model.train(mode == "train")
    assert _responds(res, size)
    assert not _responds(twin, size)
    # … and without zero-init both respond, so the difference above is the shortcuts'.
    assert _responds(reslab.create_model(plain, **options).train(mode == "train"), size)


def test_plain_blocks_have_no_shortcut_and_compute_relu_of_the_branch():
    model = reslab.create_model("plain20").eval()
    for _, block in named_blocks(model):
        assert not block.residual and block.downsample is None and block.gate is None
    block = model.layer2[0]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expected = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))))
        torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [20, 110])
def test_option_a_twin_has_the_same_parameters(depth):
    res = reslab.create_model(f"resnet{depth}")
    twin = reslab.create_model(f"plain{depth}")
    res_shapes = {k: v.shape for k, v in res.state_dict().items()}
    twin_shapes = {k: v.shape for k, v in twin.state_dict().items()}
    assert res_shapes == twin_shapes
    assert [n for n, _ in res.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert sum(p.numel() for p in res.parameters()) == sum(p.numel() for p in twin.parameters())
    twin.load_state_dict(res.state_dict(), strict=True)  # the same weights, with and without shortcuts


# -- shortcut options ------------------------------------------------------------------------
def test_shortcut_options_build_the_right_modules():
    kinds = {}
    for option in ("A", "B", "C", "none"):
        model = reslab.create_model("resnet20", shortcut=option)
        kinds[option] = {name: type(block.downsample).__name__ for name, block in named_blocks(model)}
    changing = {"layer2.0", "layer3.0"}
    assert {n for n, k in kinds["A"].items() if k == "ZeroPadShortcut"} == changing
    assert {n for n, k in kinds["A"].items() if k != "NoneType"} == changing
    assert {n for n, k in kinds["B"].items() if k == "Sequential"} == changing
    assert {n for n, k in kinds["B"].items() if k != "NoneType"} == changing
    assert set(kinds["C"].values()) == {"Sequential"}  # a projection in every one of the 9 blocks
    assert set(kinds["none"].values()) == {"NoneType"}
    projection = reslab.create_model("resnet20", shortcut="B").layer2[0].downsample
    assert isinstance(projection[0], nn.Conv2d) and projection[0].kernel_size == (1, 1) and projection[0].stride == (2, 2)
    assert isinstance(projection[1], nn.BatchNorm2d)
    # Pre-activation projections take the normalised input: no BN of their own.
    preact = reslab.create_model("preact_resnet110").layer2[0].downsample
    assert len(preact) == 1 and isinstance(preact[0], nn.Conv2d)


def test_shortcut_options_parameter_differences():
    count = {o: sum(p.numel() for p in reslab.create_model("resnet20", shortcut=o).parameters())
             for o in ("A", "B", "C", "none")}
    assert count["A"] == count["none"] == 269_722
    # B: 1×1 conv + BN where the shape changes: (16·32 + 2·32) + (32·64 + 2·64).
    assert count["B"] - count["A"] == 576 + 2176
    # C: also in the 7 blocks that keep their shape: 3·(16·16 + 32) + 2·(32·32 + 64) + 2·(64·64 + 128).
    assert count["C"] - count["B"] == 3 * 288 + 2 * 1088 + 2 * 4224


def test_option_a_subsamples_and_zero_pads():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 7, 7)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert sum(p.numel() for p in shortcut.parameters()) == 0


def test_option_a_both_puts_half_the_zero_channels_before_and_half_after():
    shortcut = ZeroPadShortcut(16, 32, stride=2, pad="both")
    x = torch.randn(2, 16, 7, 7)
    y = shortcut(x)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0


def test_public_cifar_resnet_weights_give_their_logits_only_with_shortcut_pad_both(public_cifar_resnet):
    """Weights of the public CIFAR ResNet code (zero channels on both sides, classifier `linear`)
    load into reslab with every key matching but the classifier's name, and either convention loads
    without complaint; only shortcut_pad="both" computes what they computed."""
    theirs = public_cifar_resnet.resnet(8, num_classes=10).eval()
    with torch.no_grad():  # BN statistics other than 0/1, so every layer matters
        for module in theirs.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    state = {k.replace("linear.", "fc.", 1) if k.startswith("linear.") else k: v for k, v in theirs.state_dict().items()}
    x = torch.randn(4, 3, 16, 16)
    outputs = {}
    for pad in ("both", "back"):
        ours = reslab.create_model("cifar_resnet8", num_classes=10, shortcut_pad=pad).eval()
        ours.load_state_dict(state)  # strict: the same names and shapes either way
        with torch.no_grad():
            outputs[pad] = ours(x)
    with torch.no_grad():
        expected = theirs(x)
    torch.testing.assert_close(outputs["both"], expected, rtol=0, atol=1e-5)
    assert (outputs["back"] - expected).abs().max() > 0.1


def test_shortcut_pad_is_a_recorded_option_of_option_a_models_only():
    model = reslab.create_model("resnet20", shortcut_pad="both")
    assert model.model_options == {"shortcut": "A", "shortcut_pad": "both"}
    assert reslab.create_model("resnet20").model_options == {"shortcut": "A"}  # the default changes nothing
    assert model.layer2[0].downsample.pad == "both" and model.layer1[0].downsample is None
    with pytest.raises(ModelConfigError, match="shortcut_pad must be one of back, both"):
        reslab.create_model("resnet20", shortcut_pad="front")
    with pytest.raises(ModelConfigError, match="shortcut is 'B'; use it with shortcut='A'"):
        reslab.create_model("resnet18", shortcut_pad="both")
    from reslab.analysis.common import twin_options

    assert twin_options(model) == {"shortcut": "none"}  # a plain twin has no zero channels to place


# -- highway gates -----------------------------------------------------------------------------
@pytest.mark.parametrize("block_name", ["layer1.1", "layer2.0"])
def test_gated_block_computes_t_f_plus_one_minus_t_x(block_name):
    torch.manual_seed(0)
    model = reslab.create_model("highway20").eval()
    block = dict(named_blocks(model))[block_name]
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):  # non-trivial BN so F is not just conv output
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    assert torch.all(block.gate.bias == GATE_BIAS_INIT)
    x = torch.randn(2, block.in_planes, 8, 8)
    with torch.no_grad():
        f = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        t = torch.sigmoid(block.gate(x))
        carried = x[:, :, ::block.stride, ::block.stride]
        carried = F.pad(carried, (0, 0, 0, 0, 0, block.out_planes - block.in_planes))
        expected = F.relu(t * f + (1 - t) * carried)
        torch.testing.assert_close(block(x), expected, rtol=1e-6, atol=1e-6)
        assert 0.0 < t.mean() < 0.5  # biased towards carrying the input at init


# -- stochastic depth --------------------------------------------------------------------------
def test_drop_path_rates_increase_linearly_and_vanish_in_eval():
    torch.manual_seed(0)
    model = reslab.create_model("resnet20", drop_path=0.3)
    rates = [block.drop_path.drop_prob for _, block in named_blocks(model)]
    assert rates == pytest.approx([0.3 * (i + 1) / 9 for i in range(9)])
    reference = reslab.create_model("resnet20")
    reference.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 16, 16)
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
        model.train(), reference.train()
        assert not torch.allclose(model(x), reference(x))  # in training it does drop branches


def test_drop_path_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    drop = DropPath(0.5).train()
    y = drop(torch.ones(2000, 3, 2, 2))
    per_sample = y.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])  # a sample is kept or dropped as a whole
    assert set(per_sample[:, 0].unique().tolist()) == {0.0, 2.0}
    assert 0.45 < (per_sample[:, 0] == 0).float().mean() < 0.55
    drop.eval()
    x = torch.randn(4, 3)
    assert drop(x) is x


# -- zero-init of the last BN ------------------------------------------------------------------
@pytest.mark.parametrize("name, size", [("resnet20", 16), ("resnet50", 32), ("preact_resnet164", 16),
                                        ("se_resnet18", 32), ("cbam_resnet18", 32), ("highway20", 16),
                                        ("wrn_16_4", 16), ("resnext50_32x4d", 32)])
def test_zero_init_last_makes_every_branch_output_zero(name, size):
    model = reslab.create_model(name, zero_init_last=True).train()
    outputs = []
    for _, block in named_blocks(model):
        block.branch_output.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert len(outputs) == len(named_blocks(model))
    assert all(torch.count_nonzero(out) == 0 for out in outputs)
    # Without the option the branches are live.
    outputs.clear()
    fresh = reslab.create_model(name).train()
    for _, block in named_blocks(fresh):
        block.branch_output.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        fresh(torch.randn(2, 3, size, size))
    assert all(torch.count_nonzero(out) > 0 for out in outputs)


# -- activation checkpointing ------------------------------------------------------------------
def test_activation_checkpointing_same_loss_grads_and_running_stats():
    torch.manual_seed(0)
    plain = reslab.create_model("resnet20", dropout=0.1, drop_path=0.2)
    ckpt = reslab.create_model("resnet20", dropout=0.1, drop_path=0.2, activation_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    losses = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(123)  # same dropout / drop-path draws
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=name)
    # The backward-time recomputation must not update BN statistics a second time.
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    assert int(ckpt.layer1[0].bn1.num_batches_tracked) == 1


# -- lesions -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet20", "preact_resnet164", "resnet18"])
def test_removing_a_zeroed_branch_leaves_the_output_unchanged(name):
    torch.manual_seed(0)
    zeroed = reslab.create_model(name, zero_init_last=True).eval()
    live = reslab.create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    names = removable_blocks(zeroed)
    assert len(names) == len(named_blocks(zeroed))  # every residual block can be removed
    with torch.no_grad():
        before, live_before = zeroed(x), live(x)
        for block_name in (names[0], names[len(names) // 2], names[-1]):
            with blocks_removed(zeroed, [block_name]) as same:
                torch.testing.assert_close(same(x), before, rtol=1e-5, atol=1e-6)
            with blocks_removed(live, [block_name]):
                assert not torch.allclose(live(x), live_before, atol=1e-4)
    assert all(block.branch_enabled for _, block in named_blocks(zeroed))


def test_lesion_helpers_on_a_plain_net():
    model = reslab.create_model("plain20").eval()
    names = removable_blocks(model)
    assert len(names) == 7 and "layer2.0" not in names and "layer3.0" not in names
    block = model.layer2[1]
    with blocks_removed(model, ["layer2.1"]):
        probe = torch.randn(2, 32, 8, 8)
        assert block(probe) is probe  # a removed plain block is the identity
    with pytest.raises(ValueError, match="changes shape"):
        with blocks_removed(model, ["layer2.0"]):
            pass
    with pytest.raises(KeyError, match="layer9.0"):
        with blocks_removed(model, ["layer9.0"]):
            pass
    with pytest.raises(RuntimeError):
        with blocks_removed(model, ["layer1.0"]):
            raise RuntimeError("inside")
    assert model.layer1[0].branch_enabled
