"""The segment task in the one engine: a U-Net learns the shapes set, runs are seeded, resumable and
refused when mixed up; ``reslab train unet_... --data shapes`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.tasks.segment import SegmentationScores, confusion_matrix
from reslab.train import TrainConfig, load_run, resolve_config, train

TINY = {"num_train": 32, "num_test": 8, "image_size": 16}


def tiny(tmp_path, name="run", model="unet_cifar_resnet8", **changes) -> TrainConfig:
    settings = dict(data_options=dict(TINY), epochs=2, batch_size=8, device="cpu", quiet=True,
                    out=str(tmp_path / name))
    settings.update(changes)
    return resolve_config(model=model, data="shapes", overrides=settings)


def test_scores_from_the_confusion_matrix():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 0]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 0]])
    scores = SegmentationScores(confusion_matrix(predicted, target, 4))
    assert scores.pixel_accuracy == pytest.approx(6 / 8)
    # IoU: class 0 3/5, class 1 2/3, class 2 1/2, class 3 absent everywhere (not averaged).
    assert scores.iou[:3] == pytest.approx([3 / 5, 2 / 3, 1 / 2])
    assert scores.iou[3] is None and scores.miou == pytest.approx((3 / 5 + 2 / 3 + 1 / 2) / 3)


def test_unet_learns_the_shapes(tmp_path):
    torch.manual_seed(0)
    # 320 steps of 4 images (the step count, more than the images, decides how far it gets).
    result = train(tiny(tmp_path, data_options={"num_train": 256, "num_test": 32, "image_size": 32},
                                     epochs=5, batch_size=4, lr=3e-3))
    mious = [record["test_miou"] for record in result.metrics]
    # Chance: everything background scores about 0.8 / 4 = 0.2 (absent classes count 0 where they occur).
    assert result.finished and len(mious) == 5
    # Learning, not the exact path: one epoch's mIoU may dip by rounding on another CPU's kernels.
    assert mious[-1] > 0.45 and mious[-1] > mious[0] + 0.1, mious
    assert all(later > earlier - 0.02 for earlier, later in zip(mious, mious[1:])), mious
    assert result.test_pixel_accuracy > 0.88
    assert "test mIoU" in result.summary() and "pixel accuracy" in result.summary() and result.task == "segment"


def test_run_directory_seeds_and_resume(tmp_path, same_weights):
    first = train(tiny(tmp_path, "a"))
    again = train(tiny(tmp_path, "b"))
    assert [r["test_miou"] for r in first.metrics] == [r["test_miou"] for r in again.metrics]
    assert same_weights(first.model, again.model)
    run = tmp_path / "a"
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == 2 and config["task"] == "segment" and config["recipe"] == "shapes-unet"
    assert config["model"] == "unet_cifar_resnet8" and config["lr"] == 1e-3 and config["optimizer"] == "adamw"
    assert config["encoder_kind"] == "residual" and config["class_names"][0] == "background"
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"init.safetensors", "last.safetensors",
                                                                 "last.state.pt"}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and {"test_miou", "test_pixel_accuracy", "test_error"} <= set(json.loads(lines[-1]))
    loaded = load_run(run)
    assert same_weights(loaded.model, first.model)
    assert loaded.model(torch.zeros(2, 3, 16, 16)).shape == (2, 4, 16, 16)

    with pytest.raises(ConfigError, match="already holds a finished run"):
        train(tiny(tmp_path, "a"))
    stopped = train(tiny(tmp_path, "c"), stop_after_epoch=1)
    assert not stopped.finished and stopped.epoch == 1
    resumed = train(resume=tmp_path / "c")
    assert resumed.finished and [r["test_miou"] for r in resumed.metrics] == [r["test_miou"] for r in first.metrics]
    assert same_weights(resumed.model, first.model)
    with pytest.raises(ConfigError, match="cannot change lr"):
        train(tiny(tmp_path, "c", lr=0.5, epochs=3), resume=tmp_path / "c")


def test_mixed_up_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--data shapes is segmentation data.*unet_resnet18"):
        train(tiny(tmp_path, model="resnet18"))
    with pytest.raises(ConfigError, match="trains on segmentation data.*not 'digits'"):
        train(resolve_config(model="unet_cifar_resnet8", data="digits", overrides={"epochs": 1}))
    with pytest.raises(ConfigError, match="multiples of 32.*'shapes' has 16×16 images"):
        train(tiny(tmp_path, model="unet_resnet18"))
    with pytest.raises(ConfigError, match="batch-size 64 is larger than the training set"):
        train(tiny(tmp_path, "d", batch_size=64))
    with pytest.raises(ConfigError, match="cutout=8: task 'segment' does not use it"):
        train(tiny(tmp_path, "e", cutout=8))
    with pytest.raises(ConfigError, match="task segment.*unknown setting 'hflip'"):
        train(tiny(tmp_path, "e", task_options={"hflip": True}))
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _folder(root, count=6, size=32):
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for k in range(count):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{k}.png")
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[: size // 2] = 1 + k % 2
        Image.fromarray(mask).save(root / "masks" / f"{k}.png")


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "seg"
    code, stdout, err = run_cli(["train", "unet_resnet18", "--data", "shapes",
                                 "--data-option", "num_train=16", "--data-option", "num_test=4",
                                 "--set", "data_options.image_size=32", "--epochs", "1", "--batch-size", "8",
                                 "--lr", "0.002", "--seed", "3", "--threads", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert stdout.startswith("unet_resnet18 on shapes: test mIoU") and "1 epoch," in stdout
    assert "epoch 1/1 |" in err and "mIoU" in err
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "segment" and config["seed"] == 3 and config["lr"] == 0.002

    folder = tmp_path / "folder"
    _folder(folder)
    code, stdout, err = run_cli(["train", "unet_cifar_resnet8", "--data", f"segfolder:{folder}",
                                 "--epochs", "1", "--batch-size", "4", "--quiet", "--out", str(tmp_path / "f")], capsys)
    assert code == 0, err
    assert "on segfolder:" in stdout and err == ""
    assert json.loads((tmp_path / "f" / "config.json").read_text())["class_names"] == [
        "background", "class_1", "class_2"]

    from reslab.report import build_report  # noqa: PLC0415

    report = build_report([out, tmp_path / "f"], tmp_path / "report.html")
    assert "Segmentation" in report.sections and not report.warnings
    assert "mIoU" in (tmp_path / "report.html").read_text()

    for argv, message in (
        (["train", "unet_resnet18", "--data", "digits"], "unet_resnet18 is a segmentation model"),
        (["train", "resnet18", "--data", "shapes"], "--data shapes is segmentation data"),
        (["train", "resnet18", "--task", "segment", "--data", "shapes"], "--data shapes is segmentation data"),
        (["train", "unet_resnet18", "--task", "language-model"], "--task language-model does not take unet_resnet18"),
        (["train", "unet_resnet18", "--task", "sgment"], "unknown task 'sgment' (did you mean segment?)"),
        (["train", "unet_resnet18", "--out", str(out)], "already holds a finished run"),
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_model_and_data_of_different_tasks_are_refused_as_not_going_together(capsys):
    for argv, words in ((["train", "lstm2", "--data", "shapes"], "lstm2 and --data shapes do not go together"),
                        (["train", "unet_resnet20", "--data", "text"], "unet_resnet20 and --data text do not go"),
                        (["train", "resnet20", "--data", "digits", "--stop-after", "0"], "--stop-after 0"),
                        (["train", "transformer2", "--data", "text", "--data-option", "context=abc"],
                         "option context='abc' must be a whole number")):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
