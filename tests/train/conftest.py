"""Fixtures of the train room's tests: tiny configs on tiny data, and weight comparison."""

from __future__ import annotations

import pytest
import torch

from reslab.train import TrainConfig, resolve_config

# 128 random 8x8 RGB images: 4 steps per epoch at batch 32; a few ms per step with cifar_resnet8.
TINY_DATA = {"num_train": 128, "num_test": 32, "image_size": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared, busy CPU run 10-50x faster on one thread: with two OpenMP
    threads every op waits at a barrier for a thread another process has preempted."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_config(tmp_path):
    """Factory: a valid TrainConfig for cifar_resnet8 on tiny synthetic data, writing under tmp_path."""

    def make(name: str = "run", **overrides) -> TrainConfig:
        settings = {"data_options": dict(TINY_DATA), "batch_size": 32, "epochs": 2, "quiet": True,
                    "device": "cpu", "out": str(tmp_path / name)}
        settings.update(overrides)
        return resolve_config("digits-quick", model=settings.pop("model", "cifar_resnet8"),
                              data=settings.pop("data", "synthetic"), overrides=settings)

    return make
