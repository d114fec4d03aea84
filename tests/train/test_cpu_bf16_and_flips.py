"""bf16 autocast on CPUs with bf16 units (and the fallback elsewhere), and test-time flips."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reslab.train import evaluation, train
from reslab.train.evaluation import eval_sums
from reslab.utils import cpu


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_is_used_only_where_it_is_native(tiny_config, monkeypatch, native):
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: native)
    seen = []
    real = evaluation.autocast_context

    def spy(device, bf16):
        seen.append(bf16)
        return real(device, bf16)

    monkeypatch.setattr(evaluation, "autocast_context", spy)
    monkeypatch.setattr("reslab.train.step.autocast_context", spy)
    result = train(tiny_config(bf16=True, epochs=1))
    assert any("bf16" in note for note in result.notes)
    if native:
        assert "bf16 autocast on cpu" in " ".join(result.notes) and all(seen)
    else:
        assert "no native bf16" in " ".join(result.notes) and not any(seen)
    assert math.isfinite(result.metrics[-1]["train_loss"])


def test_bf16_autocast_on_a_cpu_really_computes_in_bf16():
    with evaluation.autocast_context(torch.device("cpu"), True):
        out = nn.Linear(4, 3)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_test_time_flips_average_the_logits_of_image_and_mirror():
    class LeftColumn(nn.Module):  # logits from the image's leftmost column: a flip changes them
        def forward(self, x):
            return x[:, 0, :, 0][:, :2] * 10

    x = torch.zeros(2, 1, 2, 3)
    x[0, 0, :, 0] = torch.tensor([1.0, 0.0])   # class 0 on the left
    x[0, 0, :, 2] = torch.tensor([0.0, 1.0])   # class 1 on the right (the mirror's left)
    x[1, 0, :, 0] = torch.tensor([0.0, 1.0])
    y = torch.tensor([0, 1])
    plain = eval_sums(LeftColumn(), [(x, y)])
    flipped = eval_sums(LeftColumn(), [(x, y)], flip=True)
    assert plain[1] == 0 and plain[2] == 2
    # Sample 0: logits (10, 0) and mirror (0, 10) average to a tie, argmax 0: still right;
    # its loss rises from ~0 to log 2. Sample 1's mirror has zeros: (0, 10)/2 — still right.
    assert flipped[1] == 0
    assert float(flipped[0]) > float(plain[0]) + 0.6


def test_a_run_with_test_flips_records_both_accuracies(tiny_config):
    result = train(tiny_config(test_flip=True, epochs=1))
    record = result.metrics[-1]
    assert record["test_error"] is not None and record["test_flip_error"] is not None
    assert "with test-time flips" in result.summary()


def test_cpu_features_read_the_flags_and_name_them():
    features = cpu.cpu_features()
    assert set(features) == set(cpu.FEATURES.values())
    assert cpu.has_native_bf16() == (features["AVX512-BF16"] or features["AMX-BF16"])
    assert "features:" in cpu.describe_cpu()
