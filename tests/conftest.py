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


@pytest.fixture(scope="session")
def public_cifar_resnet():
    """tests/public_cifar_resnet.py: a CIFAR ResNet written the public code's way (its own module,
    loaded by path, so no test imports it through reslab)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("public_cifar_resnet", Path(__file__).parent / "public_cifar_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def same_weights():
    def compare(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    return compare
