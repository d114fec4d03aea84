"""ModelEMA: exact values (a plain lerp_ reference), integer buffers copied, unchanged state format."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reslab.train.ema import ModelEMA


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 4 * 4, 5))


def test_ema_is_bit_identical_to_a_lerp_loop_and_copies_integer_buffers():
    model = _model()
    ema = ModelEMA(model, decay=0.9)
    reference = copy.deepcopy(model).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, 8):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.randint(0, 5, (4,))).backward()
        optimizer.step()  # also moves BN's running statistics and num_batches_tracked
        ema.update(model)
        decay = min(0.9, (1 + step) / (10 + step))
        with torch.no_grad():
            for mine, source in zip(reference.state_dict().values(), model.state_dict().values()):
                if mine.is_floating_point():
                    mine.lerp_(source, 1.0 - decay)
                else:
                    mine.copy_(source)
    got = ema.module.state_dict()
    assert all(torch.equal(got[k], v) for k, v in reference.state_dict().items())
    assert int(got["1.num_batches_tracked"]) == 7 and got["1.num_batches_tracked"].dtype == torch.int64
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training


def test_ema_state_keeps_its_format_and_resumes_exactly():
    model = _model()
    ema = ModelEMA(model, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        ema.update(model)
    state = ema.state_dict()
    assert set(state) == {"updates", "decay", "weights"} and state["updates"] == 3
    assert set(state["weights"]) == set(model.state_dict())  # the keys ema.safetensors is written with
    restored = ModelEMA(_model(), decay=0.5)
    restored.load_state_dict(state)
    for target in (ema, restored):
        target.update(model)
    after = restored.module.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in ema.module.state_dict().items())
