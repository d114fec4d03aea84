"""Suite-wide settings: deterministic, offline, headless."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
