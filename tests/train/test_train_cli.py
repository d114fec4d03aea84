"""``reslab train``, ``reslab eval`` and ``reslab predict`` end to end, and stopping on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from reslab.cli.main import main
from reslab.train import load_run, train

TINY = ["--set", "data_options.num_train=128", "--set", "data_options.num_test=32", "--set", "data_options.image_size=8"]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_train_eval_predict(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", "cifar_resnet8", "--data", "synthetic", *TINY, "--epochs", "2",
                               "--batch-size", "32", "--out", str(out), "--device", "cpu", "--quiet",
                               "--set", "ema=true", "--set", "model_options.shortcut=B"], capsys)
    assert code == 0
    assert "cifar_resnet8 on synthetic: test accuracy" in stdout and "EMA test accuracy" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "cifar10-fast" and config["epochs"] == 2 and config["model_options"] == {"shortcut": "B"}

    code, stdout, _ = run_cli(["eval", str(out), "--device", "cpu", "--json"], capsys)
    result = json.loads(stdout)
    assert code == 0 and result["count"] == 32 and result["accuracy"] == pytest.approx(1 - result["error"])
    code, stdout, _ = run_cli(["eval", str(out / "checkpoints" / "ema.safetensors"), "--device", "cpu"], capsys)
    assert code == 0 and "ema.safetensors" in stdout and "accuracy" in stdout

    image = tmp_path / "cat.png"
    Image.fromarray((torch.rand(20, 30, 3) * 255).to(torch.uint8).numpy()).save(image)  # resized to 8x8
    jpeg = tmp_path / "gray.jpg"
    Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy(), mode="L").save(jpeg)  # made RGB
    code, stdout, _ = run_cli(["predict", str(out), str(image), str(jpeg), "--top-k", "3"], capsys)
    lines = stdout.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].startswith(f"{image}: class_")
    assert lines[0].count("%") == 3


def test_cli_errors_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(["eval", str(tmp_path / "missing")], capsys)
    assert code == 2 and err.strip() == f"reslab eval: error: run directory '{tmp_path / 'missing'}' does not exist"
    code, _, err = run_cli(["train", "resnet20", "--data", "digits", "--recipe", "nope"], capsys)
    assert code == 2 and "unknown recipe 'nope'" in err and "digits-quick" in err and len(err.splitlines()) == 1
    code, _, err = run_cli(["train", "resnet20", "--data", "digits", "--set", "shedule=cosine"], capsys)
    assert code == 2 and "did you mean schedule" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "run"
    train_args = ["train", "cifar_resnet8", "--data", "synthetic", *TINY, "--epochs", "1", "--batch-size", "32",
                  "--out", str(out), "--device", "cpu", "--quiet"]
    assert run_cli(train_args, capsys)[0] == 0
    code, _, err = run_cli(["predict", str(out), str(bad)], capsys)
    assert code == 2 and "cannot be read as PNG/JPEG" in err
    code, _, err = run_cli(train_args, capsys)
    assert code == 2 and "already holds a finished run" in err
    code, stdout, _ = run_cli(["train", "--resume", str(out), "--epochs", "2", "--quiet"], capsys)
    assert code == 0 and "2 epochs" in stdout


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 256 images at batch 16: 16 steps an epoch; 40 epochs would take far longer than the test.
    argv = [sys.executable, "-m", "reslab", "train", "cifar_resnet8", "--data", "synthetic",
            "--set", "data_options.num_train=256", "--set", "data_options.num_test=32",
            "--set", "data_options.image_size=8", "--set", "model_options.dropout=0.1",
            "--batch-size", "16", "--epochs", "40", "--out", str(out), "--device", "cpu"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _signal_after_first_epoch(process: subprocess.Popen, out: Path, sig: int) -> tuple[int, str, str]:
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not finish an epoch in 120 s"
        time.sleep(0.05)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resume_is_exact(tmp_path, same_weights):
    out = tmp_path / "run"
    code, stdout, stderr = _signal_after_first_epoch(_start(out), out, signal.SIGINT)
    assert code == 130, stderr
    assert "SIGINT received" in stderr and f"--resume {out}" in stderr and "Traceback" not in stderr
    assert "stopped (SIGINT)" in stdout
    state = torch.load(out / "checkpoints" / "last.state.pt", weights_only=True)
    assert not state["finished"] and state["iteration"] >= 16
    # Continue (mid-epoch, in-process) to the end of epoch 4 and compare with a run that went
    # there in one go.
    stop = state["epoch"] + 2
    resumed = train(resume=out, stop_after_epoch=stop)
    straight = train(resumed.config.replace(out=str(tmp_path / "straight")), stop_after_epoch=stop)
    assert resumed.epoch == straight.epoch == stop
    assert resumed.iteration == straight.iteration == 16 * stop
    assert same_weights(resumed.model, straight.model)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    code, _, stderr = _signal_after_first_epoch(_start(out), out, signal.SIGTERM)
    assert code == 143, stderr
    assert "SIGTERM received" in stderr and "Traceback" not in stderr
    assert load_run(out).model is not None
    state = torch.load(out / "checkpoints" / "last.state.pt", weights_only=True)
    assert state["iteration"] >= 16 and not state["finished"]
