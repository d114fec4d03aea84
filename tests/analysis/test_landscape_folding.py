"""The landscape evaluator's folded network: a point of a plane, refolded from that point's weights."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reslab.analysis.landscape.evaluate import FoldedLoader
from reslab.models.fusion import fold_network


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def _model() -> nn.Module:
    model = Block().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_(1, 0.3)
            bn.bias.normal_(0, 0.2)
    return model


def test_folded_weights_at_a_point_of_a_plane():
    model = _model()
    state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    axis = {k: torch.randn_like(v) * 0.05 for k, v in state.items()}
    network, pairs = fold_network(copy.deepcopy(model))
    with torch.inference_mode():
        FoldedLoader(network, pairs, list(state)).load(state, [axis], [0.5])
        moved = copy.deepcopy(model)
        for k, v in moved.state_dict().items():
            if k in state:
                v.copy_(state[k] + 0.5 * axis[k])
        x = torch.randn(3, 4, 6, 6)
        assert torch.allclose(network(x), moved(x), rtol=1e-5, atol=1e-5)
