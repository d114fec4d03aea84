"""He et al.'s warm-up: lr 0.01 until the training error falls below a threshold, then the schedule."""

from __future__ import annotations

import pytest

from reslab.errors import ConfigError
from reslab.train import resolve_config, train

WARMUP = {"warmup": 20, "warmup_unit": "epochs", "warmup_mode": "constant", "warmup_lr": 0.01,
          "warmup_until_error": 0.8, "schedule": "constant", "lr": 0.1, "epochs": 4, "batch_size": 128,
          "quiet": True, "device": "cpu", "seed": 0}


def _config(tmp_path, name, **overrides):
    return resolve_config("digits-quick", model="cifar_resnet8", data="digits",
                          overrides={**WARMUP, "out": str(tmp_path / name), **overrides})


def test_warm_up_ends_after_the_first_epoch_below_the_error_and_survives_resume(tmp_path):
    full = train(_config(tmp_path, "full"))
    lrs = [row["lr"] for row in full.metrics]
    errors = [row["train_error"] for row in full.metrics]
    first_below = next(i for i, e in enumerate(errors) if e < 0.8)
    assert first_below < 3, errors  # the digits fall below 80 % error quickly
    assert lrs[:first_below + 1] == [pytest.approx(0.01)] * (first_below + 1)
    assert lrs[first_below + 1:] == [pytest.approx(0.1)] * (len(lrs) - first_below - 1)

    # Stopped after the warm-up ended and resumed: the schedule remembers where it ended.
    train(_config(tmp_path, "split"), stop_after_epoch=first_below + 1)
    resumed = train(resume=tmp_path / "split")
    assert [row["lr"] for row in resumed.metrics] == pytest.approx(lrs)
    assert [row["train_loss"] for row in resumed.metrics] == pytest.approx([row["train_loss"] for row in full.metrics])


def test_warm_up_until_error_needs_a_constant_warm_up(tmp_path):
    with pytest.raises(ConfigError, match="warmup_until_error.*warmup_mode = 'constant' and warmup > 0"):
        _config(tmp_path, "bad", warmup_mode="linear")
    with pytest.raises(ConfigError, match="warmup_until_error"):
        _config(tmp_path, "bad", warmup_until_error=1.5)
