"""The trainer end to end on tiny data: learning, determinism, resume, EMA, errors, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError, TrainingError
from reslab.train import TrainConfig, evaluate, list_checkpoints, list_run_checkpoints, load_run, train
from reslab.train import checkpoint as ckpt
from reslab.train import trainer as trainer_module
from reslab.train.rundir import METRIC_COLUMNS, read_config


def test_training_on_digits_learns_and_writes_the_run_dir(tiny_config, tmp_path):
    config = tiny_config("digits", data="digits", data_options={}, batch_size=128, epochs=3, save_every=2)
    result = train(config)
    run_dir = tmp_path / "digits"
    first, last = result.metrics[0], result.metrics[-1]
    assert last["train_loss"] < first["train_loss"]
    assert result.test_error < 0.5 and result.finished  # 10 classes: chance is 0.9
    assert "test accuracy" in result.summary()

    names = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert names == {"init.safetensors", "epoch_0002.safetensors", "last.safetensors", "last.state.pt"}
    assert list_checkpoints(run_dir) == [2]
    assert list_run_checkpoints(run_dir) == ["init", "epoch_2", "last"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(METRIC_COLUMNS) <= set(records[0])
    csv_lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:len(METRIC_COLUMNS)] == list(METRIC_COLUMNS) and len(csv_lines) == 4
    saved = read_config(run_dir)
    assert saved["num_classes"] == 10 and saved["in_chans"] == 1 and len(saved["mean"]) == 1
    assert saved["versions"]["torch"] == torch.__version__ and saved["dataset"]["source"]
    state = torch.load(run_dir / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["finished"] and state["iteration"] == result.iteration == 3 * (1438 // 128)

    run = load_run(run_dir)
    assert not run.model.training and next(run.model.parameters()).device.type == "cpu"
    again = evaluate(run.model, run.dataset)
    assert again.error == pytest.approx(result.test_error) and again.count == 359
    init = load_run(run_dir, "init").model
    assert evaluate(init, run.dataset).error > again.error
    assert torch.equal(load_run(run_dir, "epoch_2").model.fc.weight,
                       load_run(run_dir / "checkpoints" / "epoch_0002.safetensors").model.fc.weight)


def test_same_seed_same_weights_other_seed_other_weights(tiny_config, same_weights):
    a = train(tiny_config("a", model_options={"dropout": 0.2}))
    b = train(tiny_config("b", model_options={"dropout": 0.2}))
    c = train(tiny_config("c", model_options={"dropout": 0.2}, seed=1))
    assert same_weights(a.model, b.model)
    assert not same_weights(a.model, c.model)


def test_four_epochs_equal_two_plus_resumed_two(tiny_config, same_weights, tmp_path):
    # Step schedule: train 2 epochs, then resume with --epochs 4 (milestones are absolute).
    settings = dict(schedule="step", milestones=[3], milestone_unit="epochs", model_options={"dropout": 0.1})
    straight = train(tiny_config("straight", epochs=4, **settings))
    first = train(tiny_config("split", epochs=2, **settings))
    assert first.finished
    extended = TrainConfig.from_dict(read_config(tmp_path / "split")).replace(epochs=4)
    resumed = train(extended, resume=tmp_path / "split")
    assert same_weights(straight.model, resumed.model)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in straight.metrics]


def test_stop_and_resume_is_exact_with_ema_and_onecycle(tiny_config, same_weights, tmp_path):
    straight = train(tiny_config("straight", epochs=4, ema=True, ema_decay=0.9))
    stopped = train(tiny_config("split", epochs=4, ema=True, ema_decay=0.9), stop_after_epoch=2)
    assert not stopped.finished and stopped.stopped_by == "stop_after_epoch" and stopped.epoch == 2
    resumed = train(resume=tmp_path / "split")
    assert resumed.finished and resumed.epoch == 4
    assert same_weights(straight.model, resumed.model)
    assert same_weights(straight.ema_model, resumed.ema_model)
    # EMA is evaluated and saved next to the weights.
    assert all(r["ema_test_error"] is not None for r in resumed.metrics)
    ema = load_run(tmp_path / "split", "ema").model
    assert same_weights(ema, resumed.ema_model) and not same_weights(ema, resumed.model)


def test_resume_refuses_to_change_the_recipe(tiny_config, tmp_path):
    train(tiny_config("run", epochs=1))
    changed = TrainConfig.from_dict(read_config(tmp_path / "run")).replace(lr=0.5, epochs=2)
    with pytest.raises(ConfigError, match=r"cannot change lr \(0.2 -> 0.5\)"):
        train(changed, resume=tmp_path / "run")
    with pytest.raises(ConfigError, match="already finished"):
        train(resume=tmp_path / "run")


def test_a_used_run_dir_is_not_overwritten(tiny_config):
    train(tiny_config("run", epochs=1))
    with pytest.raises(ConfigError, match="already holds a finished run.*fresh --out.*--resume"):
        train(tiny_config("run", epochs=1))


def test_resume_of_a_missing_or_corrupt_run(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        train(resume=tmp_path / "nowhere")
    train(tiny_config("run", epochs=2), stop_after_epoch=1)
    state = tmp_path / "run" / "checkpoints" / "last.state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="last.state.pt.*corrupt"):
        train(resume=tmp_path / "run")
    weights = tmp_path / "run" / "checkpoints" / "last.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="last.safetensors.*corrupt"):
        load_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="no checkpoint for epoch 7"):
        load_run(tmp_path / "run", "epoch_7")
    with pytest.raises(CheckpointError, match="without ema"):
        load_run(tmp_path / "run", "ema")
    (tmp_path / "run" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json.*corrupt"):
        load_run(tmp_path / "run", "init")


def test_batch_larger_than_the_dataset_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="--batch-size 256 is larger than the training set.*128 images"):
        train(tiny_config("run", batch_size=256))


class _PoisonedLoss(nn.Module):
    """Cross-entropy that turns NaN from the 7th call on (epoch 2 at 4 steps per epoch)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, logits, labels):
        self.calls += 1
        loss = nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if self.calls >= 7 else loss


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "make_criterion", lambda task, config: _PoisonedLoss())
    with pytest.raises(TrainingError, match=r"loss became nan in epoch 2.*last good checkpoint.*iteration 4.*--lr"):
        train(tiny_config("run", epochs=3))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["iteration"] == 4
    run = load_run(tmp_path / "run")
    assert all(torch.isfinite(t).all() for t in run.model.state_dict().values() if t.is_floating_point())
    monkeypatch.undo()
    resumed = train(resume=tmp_path / "run")  # the good checkpoint still resumes
    assert resumed.finished and resumed.epoch == 3


def test_a_crash_during_save_leaves_the_previous_checkpoint(tiny_config, tmp_path, monkeypatch, same_weights):
    train(tiny_config("run", epochs=2), stop_after_epoch=1)
    directory = tmp_path / "run" / "checkpoints"
    before = load_run(tmp_path / "run").model
    state_before = (directory / "last.state.pt").read_bytes()

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 100)  # a partial file, then the "disk" fails
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt, "save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        train(resume=tmp_path / "run")
    assert same_weights(load_run(tmp_path / "run").model, before)
    assert (directory / "last.state.pt").read_bytes() == state_before
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind
    monkeypatch.undo()
    assert train(resume=tmp_path / "run").finished


def test_out_of_memory_becomes_a_training_error(tiny_config, monkeypatch):
    def oom(self, x, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer_module._Trainer, "_step", oom)
    with pytest.raises(TrainingError, match=r"out of memory.*smaller --batch-size \(e.g. 16\).*accumulate=2"):
        train(tiny_config("run"))



def test_a_stop_request_file_stops_the_run_within_a_few_steps_and_it_resumes_exactly(tiny_config, same_weights,
                                                                                      tmp_path, monkeypatch):
    """A pruned trial's run stops mid-epoch (not after another whole epoch) and resumes as if never stopped."""
    data = {"num_train": 1024, "num_test": 32, "image_size": 8}  # 32 steps per epoch
    straight = train(tiny_config("straight", epochs=2, data_options=data))
    real_step = trainer_module._Trainer._step

    def step_then_request_a_stop(self, x, y):
        if self.iteration == 2:
            (self.run_dir / "stop-request").touch()
        return real_step(self, x, y)

    monkeypatch.setattr(trainer_module._Trainer, "_step", step_then_request_a_stop)
    stopped = train(tiny_config("split", epochs=2, data_options=data))
    assert not stopped.finished and stopped.stopped_by == "stop_request"
    assert stopped.iteration == trainer_module.CHECK_EVERY and stopped.epoch == 0
    monkeypatch.setattr(trainer_module._Trainer, "_step", real_step)
    (tmp_path / "split" / "stop-request").unlink()
    resumed = train(resume=tmp_path / "split")
    assert resumed.finished and same_weights(straight.model, resumed.model)
