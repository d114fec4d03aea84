"""DistributedDataParallel: 2 CPU processes (gloo) against one process on the same global batch.

torch has no CPU SyncBatchNorm, so with gloo each rank normalises with its own shard's batch
statistics. One process reproduces exactly that with ``accumulate=2``: the loader gives rank r
the positions r, r+2, ... of each global batch, and micro-batch j of ``accumulate`` is
``batch[j::2]``; the averaged gradients are then the same, so the parameters must agree (BN
running statistics differ by design: DDP keeps rank 0's, accumulation updates them twice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from reslab.train import load_run, train

SETTINGS = ["--set", "data_options.num_train=256", "--set", "data_options.num_test=64",
            "--set", "data_options.image_size=8", "--batch-size", "32", "--epochs", "2", "--device", "cpu",
            "--quiet"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, tiny_config):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "reslab", "train", "cifar_resnet8", "--data", "synthetic", "--recipe", "digits-quick", *SETTINGS, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone prints

    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["batch_size"] // config["world_size"] == 16 and config["steps_per_epoch"] == 8
    single = train(tiny_config("single", data_options={"num_train": 256, "num_test": 64, "image_size": 8},
                               batch_size=32, epochs=2, accumulate=2))
    ddp = load_run(out).model
    ddp_params, single_params = dict(ddp.named_parameters()), dict(single.model.named_parameters())
    for name, value in single_params.items():
        # float sums in another order, through 16 steps at lr up to 0.4: agreement to ~1e-5
        assert torch.allclose(ddp_params[name], value, atol=2e-4, rtol=1e-4), name
    assert not torch.equal(ddp_params["fc.weight"], load_run(out, "init").model.fc.weight)  # it did train
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Train metrics are summed over both ranks: the whole global batch.
    for ddp_record, single_record in zip(records, single.metrics):
        assert ddp_record["train_loss"] == pytest.approx(single_record["train_loss"], rel=1e-4)
        assert ddp_record["test_error"] == pytest.approx(single_record["test_error"], abs=1 / 64 + 1e-9)
