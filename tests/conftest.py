"""Suite-wide settings: deterministic, offline, headless."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# pytest-xdist runs 2 workers on CI's 2 cores: one torch thread each avoids oversubscription,
# which made small-model tests 10-100x slower.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
