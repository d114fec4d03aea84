"""Learning-rate schedules, optimizer parameter groups and the EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import reslab
from reslab.train import build_schedule, resolve_config
from reslab.train.ema import ModelEMA
from reslab.train.optim import build_optimizer, param_groups


def paper_schedule(depth: int):
    config = resolve_config("cifar10-paper")
    return build_schedule(config, steps_per_epoch=390, total_iterations=64000, depth=depth)


def test_paper_step_schedule_divides_at_32k_and_48k():
    s = paper_schedule(depth=56)
    assert s.warmup == 0  # ResNet-56 is not warmed up
    assert s.lr_at(0) == pytest.approx(0.1)
    assert s.lr_at(31999) == pytest.approx(0.1)
    assert s.lr_at(32000) == pytest.approx(0.01)
    assert s.lr_at(47999) == pytest.approx(0.01)
    assert s.lr_at(48000) == pytest.approx(0.001)
    assert s.lr_at(63999) == pytest.approx(0.001)


def test_paper_warmup_only_for_110_layers_and_deeper():
    s = paper_schedule(depth=110)
    assert s.warmup == 400
    assert s.lr_at(0) == pytest.approx(0.01)
    assert s.lr_at(399) == pytest.approx(0.01)
    assert s.lr_at(400) == pytest.approx(0.1)
    assert s.lr_at(32000) == pytest.approx(0.01)


def test_depth_comes_from_the_model():
    from reslab.models import weight_layers

    assert len(weight_layers(reslab.create_model("resnet110"))) == 110


def test_milestones_in_epochs_and_linear_warmup():
    config = resolve_config("digits-quick", overrides={"schedule": "step", "milestones": [2, 3], "milestone_unit": "epochs",
                                                      "warmup": 1, "warmup_unit": "epochs", "warmup_lr": 0.0,
                                                      "warmup_mode": "linear", "lr": 0.2, "gamma": 0.5})
    s = build_schedule(config, steps_per_epoch=10, total_iterations=50, depth=20)
    assert s.milestones == (20, 30)
    assert s.lr_at(0) == pytest.approx(0.0)
    assert s.lr_at(5) == pytest.approx(0.1)  # half way up the ramp
    assert s.lr_at(10) == pytest.approx(0.2)
    assert s.lr_at(20) == pytest.approx(0.1)
    assert s.lr_at(30) == pytest.approx(0.05)


def test_cosine_ends_at_min_lr():
    config = resolve_config("digits-quick", overrides={"schedule": "cosine", "lr": 0.4, "min_lr": 0.004})
    s = build_schedule(config, steps_per_epoch=10, total_iterations=100, depth=20)
    assert s.lr_at(0) == pytest.approx(0.4)
    assert s.lr_at(50) == pytest.approx(0.202)
    assert s.lr_at(100) == pytest.approx(0.004)
    assert all(s.lr_at(t) >= s.lr_at(t + 1) for t in range(100))


def test_onecycle_peaks_where_asked():
    config = resolve_config("cifar10-fast", overrides={"schedule": "onecycle", "lr": 0.4, "onecycle_peak_at": 0.25,
                                                      "onecycle_start_factor": 0.1, "min_lr": 0.0})
    s = build_schedule(config, steps_per_epoch=100, total_iterations=1000, depth=20)
    assert s.lr_at(0) == pytest.approx(0.04)
    assert s.lr_at(250) == pytest.approx(0.4)
    assert max(s.lr_at(t) for t in range(1000)) == pytest.approx(0.4)
    assert s.lr_at(625) == pytest.approx(0.2)
    assert s.lr_at(1000) == pytest.approx(0.0)


def test_no_weight_decay_on_bn_and_bias_groups():
    model = reslab.create_model("cifar_resnet8", num_classes=10)
    decay, no_decay = param_groups(model, 1e-4, no_wd_on_bn_and_bias=True)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    bias_ids = {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    assert {id(p) for p in no_decay["params"]} == norm_ids | bias_ids
    assert all(p.ndim > 1 for p in decay["params"])  # conv and fc weights only
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-4


@pytest.mark.parametrize("exclude", [True, False])
def test_weight_decay_acts_only_where_asked(exclude):
    model = reslab.create_model("cifar_resnet8", num_classes=10)
    config = resolve_config("digits-quick", overrides={"weight_decay": 0.1, "no_wd_on_bn_and_bias": exclude,
                                                      "momentum": 0.0, "nesterov": False, "lr": 1.0})
    optimizer = build_optimizer(model, config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # no zero-initialised biases, whose decay would be invisible
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only weight decay moves the weights
    optimizer.step()
    for name, p in model.named_parameters():
        bn_or_bias = name.endswith("bias") or "bn" in name
        shrunk = torch.allclose(p, before[name] * 0.9)
        assert shrunk != (exclude and bn_or_bias), name


def test_ema_averages_with_warmed_up_decay():
    model = nn.Linear(3, 2)
    ema = ModelEMA(model, decay=0.999)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    decay = min(0.999, 2 / 11)  # the first update forgets the initialisation fast
    assert torch.allclose(ema.module.weight, decay * start + (1 - decay) * model.weight)
    for _ in range(5000):
        ema.update(model)
    assert torch.allclose(ema.module.weight, model.weight, atol=1e-3)
    restored = ModelEMA(nn.Linear(3, 2))
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 5001 and torch.equal(restored.module.weight, ema.module.weight)
    assert not math.isnan(float(restored.module.weight.sum()))
