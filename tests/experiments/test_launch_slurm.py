"""The Slurm launcher through submitit's local executor: real job processes, time limits, SIGUSR2 and
requeues on this machine (no cluster needed); and what it does where there is no Slurm."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from reslab.experiments.common import ensure_runs  # noqa: E402
from reslab.experiments.launch.base import LaunchError, LaunchSettings, RunFailed  # noqa: E402
from reslab.experiments.launch.slurm import NO_SBATCH, SlurmLauncher  # noqa: E402
from reslab.experiments.runs import run_status  # noqa: E402
from reslab.store import rundir  # noqa: E402
from reslab.train import resolve_config  # noqa: E402

#: What must match between an uninterrupted run and one trained elsewhere (or in pieces).
COMPARED = ("epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error")


def tiny(root: Path, name: str, *, epochs: int = 3, num_train: int = 256, seed: int = 0):
    """cifar_resnet8 on 16x16 synthetic images, one thread: ~25 ms a step of 32 on one core."""
    return resolve_config("digits-quick", model="cifar_resnet8", data="synthetic", overrides={
        "data_options": {"num_train": num_train, "num_test": 64, "image_size": 16}, "batch_size": 32,
        "epochs": epochs, "seed": seed, "quiet": True, "device": "cpu", "threads": 1, "out": str(root / name)})


def curve(run_dir) -> list[dict]:
    return [{k: m[k] for k in COMPARED} for m in rundir.read_metrics(run_dir)]


def slurm_local(**settings) -> LaunchSettings:
    return LaunchSettings(launcher="slurm", slurm_executor="local", **settings)


def index(exp_dir: Path) -> dict[str, dict]:
    return {run["name"]: run for run in json.loads((exp_dir / "runs.json").read_text())["runs"]}


@pytest.fixture(scope="module")
def job_startup_s() -> float:
    """Seconds a fresh Python takes to import what a job imports (the job's start-up, before training)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import submitit, reslab.experiments.launch.slurm, reslab.train"],
                   check=True)
    return time.perf_counter() - start


def test_a_sweep_through_submitit_trains_the_same_runs_as_the_local_launcher(tmp_path):
    here = [tiny(tmp_path / "here", f"s{seed}", seed=seed) for seed in (0, 1)]
    ensure_runs(here, experiment_dir=tmp_path / "here")

    exp = tmp_path / "slurm"
    configs = [tiny(exp, f"s{seed}", seed=seed) for seed in (0, 1)]
    outcomes = ensure_runs(configs, launch=slurm_local(max_parallel=2, timeout_min=5), experiment_dir=exp)

    assert [o.finished and o.action == "trained" for o in outcomes] == [True, True]
    for a, b in zip(here, configs):
        assert curve(b.out) == curve(a.out) and len(curve(b.out)) == 3
    runs = index(exp)
    assert {r["state"] for r in runs.values()} == {"finished"}
    assert all(r["where"].startswith("submitit local job ") for r in runs.values())
    # Each job's logs are under EXP_DIR/.submitit (the driver reads only the job's result).
    logs = list((exp / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2


def test_b_a_timed_out_job_is_requeued_and_resumes_where_it_stopped(tmp_path, job_startup_s):
    reference = tiny(tmp_path / "ref", "long", epochs=8, num_train=1024)
    start = time.perf_counter()
    ensure_runs([reference], experiment_dir=tmp_path / "ref")
    total_s = time.perf_counter() - start
    training_s = rundir.read_metrics(reference.out)[-1]["elapsed_s"]  # the steps and evaluations
    setup_s = job_startup_s + max(0.0, total_s - training_s)  # imports, data, model: before the first step
    # The timeout signal (SIGUSR2) lands about halfway through the training of the first allocation:
    # the job cannot finish in one, and the requeued one resumes from the checkpoint it saved.
    signal_delay = 3
    signal_at = 1.3 * setup_s + training_s / 2
    exp = tmp_path / "slurm"
    config = tiny(exp, "long", epochs=8, num_train=1024)
    launch = slurm_local(timeout_min=(signal_at + signal_delay) / 60, max_requeues=5,
                         slurm_option={"signal_delay_s": signal_delay})
    [outcome] = ensure_runs([config], launch=launch, experiment_dir=exp)

    assert outcome.finished and outcome.action == "resumed"
    resolved = rundir.read_config(exp / "long")
    assert resolved["epochs"] == 8 and 0 < resolved["resumed_at_iteration"] < 8 * 32
    # No repeated or missing epoch, and the same numbers as the uninterrupted run.
    assert [m["epoch"] for m in curve(exp / "long")] == list(range(1, 9))
    assert curve(exp / "long") == curve(reference.out)
    log = "".join(p.read_text() for p in (exp / ".submitit").rglob("*_log.out"))
    assert "Requeued job" in log
    assert index(exp)["long"]["state"] == "finished"


def test_c_a_run_out_of_requeues_fails_in_one_line_and_keeps_its_checkpoint(tmp_path, job_startup_s):
    exp = tmp_path / "exp"
    config = tiny(exp, "endless", epochs=60, num_train=1024)  # a minute of training: far past the limit
    signal_delay = 3
    launch = slurm_local(timeout_min=(2 * job_startup_s + 4 + signal_delay) / 60, max_requeues=0,
                         slurm_option={"signal_delay_s": signal_delay})
    with pytest.raises(RunFailed) as failure:
        ensure_runs([config], launch=launch, experiment_dir=exp)

    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("endless failed: timed out 1 time ")
    assert "--max-requeues 0" in message and f"reslab sweep resume {exp.resolve()}" in message
    assert run_status(exp / "endless") == "unfinished"  # its checkpoint is kept
    entry = index(exp)["endless"]
    assert entry["state"] == "failed" and entry["error"] == message


def test_d_the_slurm_executor_without_sbatch_says_so_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    exp = tmp_path / "exp"
    with pytest.raises(LaunchError) as error:
        ensure_runs([tiny(exp, "a")], launch=LaunchSettings(launcher="slurm"), experiment_dir=exp)
    assert str(error.value) == NO_SBATCH and "\n" not in NO_SBATCH
    assert not exp.exists()


def test_e_what_is_submitted_to_slurm(tmp_path, monkeypatch):
    """With stand-ins for sbatch/srun/scancel: the sbatch script carries the settings, where() names the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool, output in (("sbatch", "Submitted batch job 4242"), ("srun", ""), ("scancel", "")):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {calls}\necho '{output}'\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    exp = tmp_path / "exp"
    settings = LaunchSettings(launcher="slurm", timeout_min=90.5, cpus_per_run=2.5, gpus_per_run=1,
                              max_requeues=2, slurm_partition="gpu", slurm_option={"account": "lab", "mail-type": "END"})
    launcher = SlurmLauncher(settings, exp)
    launcher.start()
    config = launcher.worker_config(tiny(exp, "run-a"))
    assert config.quiet and config.threads == 1  # given: kept
    assert launcher.worker_config(replace(tiny(exp, "b"), threads=0)).threads == 2  # not given: --cpus-per-run
    handle = launcher.submit(config)
    assert handle.where() == "slurm job 4242"
    script = (exp / ".submitit" / "4242" / "4242_submission.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=3", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=91", "#SBATCH --job-name=reslab-run-a", "#SBATCH --account=lab",
                 "#SBATCH --mail-type=END", "#SBATCH --signal=USR2@90"):
        assert line in script.splitlines(), line
    handle.cancel()
    assert "scancel 4242" in calls.read_text()

    with pytest.raises(LaunchError, match="whole GPUs"):
        SlurmLauncher(LaunchSettings(launcher="slurm", gpus_per_run=0.5), exp).start()


def test_f_a_job_that_raised_fails_in_one_line_naming_its_error_and_log(tmp_path):
    from submitit.core.utils import FailedJobError

    from reslab.experiments.launch.slurm import SlurmHandle

    trace = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
             "reslab.errors.ConfigError: the run in 'a' was trained with lr 0.1; this asks for 0.2\n")

    class Job:  # what submitit hands back for a job that raised
        job_id = "77"
        paths = type("Paths", (), {"stderr": tmp_path / "77_0_log.err"})()

        def result(self):
            raise FailedJobError(f"Job (task=0) failed during processing with trace:\n----------------------\n{trace}\n"
                                 "----------------------\nYou can check full logs with 'job.stderr(0)'")

    launcher = SlurmLauncher(LaunchSettings(launcher="slurm"), tmp_path)
    handle = SlurmHandle(Job(), tiny(tmp_path, "a"), launcher)
    with pytest.raises(RunFailed) as failure:
        handle.outcome()
    assert str(failure.value) == (f"a failed in slurm job 77: the run in 'a' was trained with lr 0.1; this asks for "
                                  f"0.2 (log: {tmp_path / '77_0_log.err'})")
