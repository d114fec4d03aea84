"""Model tests run thousands of tiny ops: one intra-op thread avoids OpenMP oversubscription.

On a shared 2-core machine two threads per op made a 1202-layer forward 10–50× slower.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
