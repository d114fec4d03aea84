"""Fixtures of the experiment tests: one Ray cluster shared by every test that asks for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (2 CPUs, started once per test session: about 8 s); the Ray launcher finds
    it already running, uses it and leaves it on."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
