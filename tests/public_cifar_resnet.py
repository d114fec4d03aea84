"""A CIFAR ResNet written the way the most-used public PyTorch code writes it (not reslab's).

Tests load state dicts of this module into reslab's models to check that weights trained with other
people's code compute the same thing there. What makes it "public-style":

* module names ``conv1``, ``bn1``, ``layer1..3`` (blocks ``conv1/bn1/conv2/bn2``), classifier ``linear``;
* option A's shortcut is a ``LambdaLayer`` around a lambda that subsamples and zero-pads the
  channels on *both* sides (``planes // 4`` before and after), where reslab appends them;
* Kaiming-normal init of conv and linear weights.

Load it by path (the test suite has no package): :func:`load` in the tests that use it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=10, in_chans=3):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_chans, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def resnet(depth: int, num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    """ResNet-``depth`` for CIFAR (depth 6n+2: n blocks per stage)."""
    n = (depth - 2) // 6
    return CifarResNet([n, n, n], num_classes=num_classes, in_chans=in_chans)
