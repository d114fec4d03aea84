"""The one engine gives every task the same guarantees: a run killed (SIGKILL) or terminated (SIGTERM)
mid-training and resumed ends with weights bit-identical to an uninterrupted run, and torchrun trains
it on CPU with gloo — for a classifier, a U-Net and a language model alike."""

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
from safetensors.torch import load_file

from reslab.train import load_run, resolve_config, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    if not path.exists():
        words = ["residual", "shortcut", "branch", "identity", "gradient", "layer", "deep", "plain"]
        path.write_text(" ".join(words[(i * 7 + i // 3) % len(words)] for i in range(3000)), encoding="utf-8")
    return path


def task_arguments(task: str, tmp_path: Path) -> list[str]:
    """Settings for a run of a few seconds whose epochs are short enough for a signal to land mid-run."""
    common = ["--device", "cpu", "--threads", "1", "--epochs", "5"]
    if task == "classify":
        return ["cifar_resnet8", "--data", "synthetic", "--data-option", "num_train=256", "--data-option",
                "num_test=32", "--data-option", "image_size=8", "--model-option", "dropout=0.1",
                "--batch-size", "16", *common]
    if task == "segment":
        return ["unet_cifar_resnet8", "--data", "shapes", "--data-option", "num_train=96", "--data-option",
                "num_test=8", "--data-option", "image_size=16", "--batch-size", "8", *common]
    return ["transformer2", "--data", "text", "--data-dir", str(_text(tmp_path)), "--data-option", "context=16",
            "--model-option", "width=16", "--batch-size", "16", *common]


def cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "reslab", "train", *arguments]


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "last.safetensors")


def straight_run(task: str, tmp_path: Path) -> Path:
    out = tmp_path / "straight"
    done = subprocess.run(cli(*task_arguments(task, tmp_path), "--out", str(out), "--quiet"), env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def interrupt_after_first_epoch(task: str, tmp_path: Path, sig: int) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path / "interrupted"
    process = subprocess.Popen(cli(*task_arguments(task, tmp_path), "--out", str(out)), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no epoch finished in 240 s"
        time.sleep(0.02)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=240)
    return out, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classify", "segment", "language-model"])
def test_killed_and_terminated_runs_resume_bit_identical_for_every_task(task, tmp_path):
    reference = last_weights(straight_run(task, tmp_path))
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["task"] == task
    for sig in (signal.SIGKILL, signal.SIGTERM):
        attempt = tmp_path / sig.name
        attempt.mkdir()
        out, stopped = interrupt_after_first_epoch(task, attempt, sig)
        if sig == signal.SIGTERM:
            assert stopped.returncode in (0, 143), stopped.stderr  # 0: it finished before the signal landed
            if stopped.returncode == 143:
                assert "SIGTERM received" in stopped.stderr and f"--resume {out}" in stopped.stderr
        else:
            assert stopped.returncode == -signal.SIGKILL
        if stopped.returncode != 0:
            resumed = subprocess.run(cli("--resume", str(out), "--quiet"), env=ENV, capture_output=True, text=True,
                                     timeout=300)
            assert resumed.returncode == 0, resumed.stderr
        weights = last_weights(out)
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), f"{task} after {sig.name}"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segment", "language-model"])
def test_torchrun_trains_a_unet_and_a_language_model_on_cpu(task, tmp_path):
    out = tmp_path / "ddp"
    arguments = [a if a != "5" else "2" for a in task_arguments(task, tmp_path)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "reslab", "train", *arguments, "--out", str(out), "--quiet"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["task"] == task
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["test_loss"] is not None for r in records)
    assert records[-1]["train_loss"] < records[0]["train_loss"] + 0.5
    assert load_run(out).model is not None


def test_a_task_defined_in_a_users_own_file_gets_the_engine(tmp_path):
    """docs/examples/tone_task.py: a task outside the package, in one short file, trained with resume,
    the lock, metrics and the report's curves from the engine."""
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tone_task.py"
    assert len(example.read_text().splitlines()) <= 90  # the issue asks for about 80
    out = tmp_path / "tones"

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(example), str(out), *extra], env=ENV, capture_output=True,
                              text=True, timeout=300)

    first = run("epochs=2", "threads=1", "bf16=true")
    assert first.returncode == 0, first.stderr
    assert "tone_net on tones: test accuracy" in first.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == 2 and config["task"] == "tones" and config["dataset"]["num_train"] == 512
    assert any("bf16" in note for note in config["notes"])
    again = run("epochs=2")
    assert again.returncode == 2 or "already holds a finished run" in again.stderr, again.stderr
    changed = run("--resume", "epochs=3")
    assert changed.returncode == 2 and "cannot change bf16" in changed.stderr  # what the run was, it stays
    assert len(changed.stderr.strip().splitlines()) == 1, changed.stderr
    longer = run("--resume", "epochs=3", "threads=1", "bf16=true")
    assert longer.returncode == 0, longer.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]

    from reslab.report import build_report  # noqa: PLC0415

    report = build_report([out], tmp_path / "report.html")
    assert "Training curves" in report.sections

    # reslab's commands do not know the task: one line naming it; the user's own code loads the run.
    refused = subprocess.run([sys.executable, "-m", "reslab", "eval", str(out)], env=ENV, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "task 'tones'" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    loader = tmp_path / "load.py"
    loader.write_text(f"import runpy, sys\nsys.argv = ['tone_task']\nrunpy.run_path({str(example)!r}, run_name='tones')\n"
                      f"from reslab.train import load_run\nrun = load_run({str(out)!r})\n"
                      "print(run.task, run.dataset.num_train, run.model(run.dataset.test_x[:2]).shape)\n")
    loaded = subprocess.run([sys.executable, str(loader)], env=ENV, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["tones", "512", "torch.Size([2,", "4])"]
