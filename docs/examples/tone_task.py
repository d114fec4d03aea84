"""A task of your own in one file: which of 4 pitches a noisy 1-D signal holds, by a small residual
1-D conv net. ``python tone_task.py OUT [--resume] [KEY=VALUE ...]`` (engine settings, and the task's own
as ``task_options.noise=1.0``); ``torchrun --standalone --nproc_per_node 2 tone_task.py OUT`` for DDP."""
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from reslab.errors import ReslabError
from reslab.settings import Settings, setting
from reslab.tasks import Task, register_task
from reslab.train import parse_overrides, resolve_config, train


@dataclass(frozen=True)
class ToneSettings(Settings):
    noise: float = setting(0.5, "standard deviation of the noise", minimum=0)


def tones(n: int, classes: int, noise: float, seed: int, length: int = 64):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    t = torch.arange(length) / length
    x = torch.sin(2 * torch.pi * (2 + 3 * y[:, None]) * t + 6.3 * torch.rand(n, 1, generator=g))
    return (x + noise * torch.randn(n, length, generator=g))[:, None], y


class Loader:  # this rank's share of every global batch, in an order fixed by (seed, epoch)
    def __init__(self, x, y, batch, device, seed=0, train=True, rank=0, world=1):
        self.x, self.y, self.batch, self.seed, self.train = x.to(device), y.to(device), batch, seed, train
        self.rank, self.world, self.epoch, self.dataset_size = rank, world, 0, len(y)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        mine = len(range(self.rank, len(self.y), self.world))
        return len(self.y) // (self.batch * self.world) if self.train else -(-mine // self.batch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.y), generator=g) if self.train else torch.arange(len(self.y))
        mine = order[self.rank::self.world]
        for i in range(len(self)):
            yield self.x[mine[i * self.batch:(i + 1) * self.batch]], self.y[mine[i * self.batch:(i + 1) * self.batch]]


class Block(nn.Module):  # y = F(x) + x
    def __init__(self, width):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU())

    def forward(self, x):
        return self.branch(x) + x


@register_task
class ToneTask(Task):
    name, settings, unit = "tones", ToneSettings, ("signals", "sig")

    def load_data(self, config, **_):
        noise = self.options(config.task_options).noise  # the engine records what it finds of these names
        (train_x, train_y), (test_x, test_y) = tones(512, 4, noise, seed=1), tones(128, 4, noise, seed=2)
        return SimpleNamespace(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, num_classes=4,
                               in_chans=1, name="tones", source="generated", num_train=512, num_test=128)

    def build_model(self, config, data):
        w = 16
        return nn.Sequential(nn.Conv1d(1, w, 5, padding=2), *[Block(w) for _ in range(3)],
                             nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(w, data.num_classes))

    def loaders(self, config, data, *, batch_size, device, rank=0, world_size=1):
        return (Loader(data.train_x, data.train_y, batch_size, device, config.seed, True, rank, world_size),
                Loader(data.test_x, data.test_y, config.eval_batch_size, device, 0, False, rank, world_size))


if __name__ == "__main__":  # python tone_task.py OUT_DIR [--resume] [KEY=VALUE ...]
    settings = {"task": "tones", "epochs": 4, "batch_size": 32, "lr": 0.05, "out": sys.argv[1]}
    try:
        settings.update(parse_overrides(a for a in sys.argv[2:] if a != "--resume"))
        config = resolve_config(None, model="tone_net", data="tones", overrides=settings)  # the engine's defaults
        result = train(config, resume=sys.argv[1] if "--resume" in sys.argv else None)
        if int(os.environ.get("RANK", 0)) == 0:  # under torchrun every process runs this file; one prints
            print(result.summary())
    except ReslabError as exc:  # a bad setting or a busy run directory: one line, as reslab's commands say it
        print(f"tone_task: error: {exc}", file=sys.stderr)
        sys.exit(2)
