"""The Ray launcher: runs as Ray tasks, the same numbers as the local launcher, a worker killed
mid-run retried from its checkpoint, and one-line refusals (no cluster, storage not seen, no GPU)
before anything is written. One local Ray cluster serves every test (``ray_cluster``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from safetensors.torch import load_file

from reslab.experiments.common import ensure_runs
from reslab.experiments.launch.base import LaunchError, LaunchSettings, RunFailed
from reslab.experiments.runs import ensure_run, run_status
from reslab.store import rundir
from reslab.store.lock import lock_holder
from reslab.train import TrainConfig, resolve_config

# 8x8 random images, 2 steps per epoch at batch 32: a run takes well under a second.
TINY = {"num_train": 64, "num_test": 32, "image_size": 8}
#: Metrics that time the run rather than compute it.
TIMINGS = {"images_per_s", "epoch_time_s", "elapsed_s"}


def tiny(out: Path, model: str = "cifar_resnet8", *, data=TINY, epochs: int = 2, **overrides) -> TrainConfig:
    settings = {"data_options": dict(data), "batch_size": 32, "epochs": epochs, "quiet": True, "device": "cpu",
                "threads": 1, "out": str(out), **overrides}
    return resolve_config("digits-quick", model=model, data="synthetic", overrides=settings)


def ray_settings(**kwargs) -> LaunchSettings:
    return LaunchSettings(launcher="ray", **kwargs)


def computed(run_dir: Path) -> list[dict]:
    """The run's per-epoch metrics without its timings."""
    return [{k: v for k, v in record.items() if k not in TIMINGS} for record in rundir.read_metrics(run_dir)]


def weights(run_dir: Path) -> dict:
    return load_file(str(rundir.checkpoints_dir(run_dir) / rundir.LAST_WEIGHTS))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text.strip(), text
    return text


def test_a_sweep_on_ray_computes_what_the_local_launcher_does(tmp_path, ray_cluster):
    sweep = [("cifar_resnet8", 0), ("cifar_plain8", 0), ("cifar_resnet8", 1)]

    def configs(root: Path) -> list[TrainConfig]:
        return [tiny(root / f"{model}-s{seed}", model, seed=seed) for model, seed in sweep]

    local = ensure_runs(configs(tmp_path / "local"), jobs=1)
    on_ray = ensure_runs(configs(tmp_path / "ray"), launch=ray_settings(cpus_per_run=1))
    assert [o.action for o in local] == [o.action for o in on_ray] == ["trained"] * 3
    assert all(o.finished for o in on_ray)
    for model, seed in sweep:
        name = f"{model}-s{seed}"
        assert computed(tmp_path / "ray" / name) == computed(tmp_path / "local" / name)
        assert len(computed(tmp_path / "ray" / name)) == 2
    index = json.loads((tmp_path / "ray" / "runs.json").read_text())
    assert "ray node" in json.dumps(index)
    # Run again: everything is reused, nothing goes to Ray.
    again = ensure_runs(configs(tmp_path / "ray"), launch=ray_settings())
    assert {o.action for o in again} == {"reused"}


@contextmanager
def killing_its_worker(run_dir: Path, sig: int = signal.SIGKILL):
    """SIGKILL the Ray worker training ``run_dir`` once it has saved its first epoch (the trainer
    writes metrics after the checkpoint; the lock file holds the writer's PID). Yields the list
    of PIDs killed."""
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            pid = lock_holder(run_dir)
            saved = (run_dir / rundir.METRICS_JSONL).is_file() and rundir.read_metrics(run_dir, partial_ok=True)
            if pid and pid != os.getpid() and saved:
                os.kill(pid, sig)
                killed.append(pid)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join()
    assert killed, "the run finished before the killer found its worker"


BIGGER = {"num_train": 1024, "num_test": 32, "image_size": 8}


def test_b_a_worker_killed_mid_run_is_retried_and_resumes_bit_identical(tmp_path, ray_cluster):
    # Long enough (a second or so an epoch on a busy core) for the killer to strike mid-run.
    data = BIGGER
    reference = ensure_run(tiny(tmp_path / "reference" / "run", data=data, epochs=4))
    assert reference.finished

    run_dir = tmp_path / "exp" / "run"
    with killing_its_worker(run_dir):
        [outcome] = ensure_runs([tiny(run_dir, data=data, epochs=4)], launch=ray_settings(max_requeues=1))
    assert outcome.finished and outcome.action == "resumed"  # the retry continued from the checkpoint
    assert computed(run_dir) == computed(tmp_path / "reference" / "run")
    ours, theirs = weights(run_dir), weights(tmp_path / "reference" / "run")
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)


def test_a_run_its_engine_stops_with_sigterm_is_handed_out_again_and_ends_bit_identical(tmp_path, ray_cluster):
    # A preemption or an operator's SIGTERM: the trainer saves and returns unfinished; the driver did
    # not ask for it, so it hands the run out again and the run resumes from its checkpoint.
    reference = ensure_run(tiny(tmp_path / "reference" / "run", data=BIGGER, epochs=4))
    run_dir = tmp_path / "exp" / "run"
    lines: list[str] = []
    with killing_its_worker(run_dir, signal.SIGTERM):
        [outcome] = ensure_runs([tiny(run_dir, data=BIGGER, epochs=4)], launch=ray_settings(max_requeues=1),
                                say=lines.append)
    assert reference.finished and outcome.finished and outcome.action == "resumed"
    assert any("stopped (SIGTERM)" in line and "handing it out again (1/1)" in line for line in lines), lines
    assert computed(run_dir) == computed(tmp_path / "reference" / "run")


def test_b_a_worker_that_dies_more_often_than_retries_allow_fails_in_one_line(tmp_path, ray_cluster):
    run_dir = tmp_path / "exp" / "run"
    with pytest.raises(RunFailed) as error, killing_its_worker(run_dir):
        ensure_runs([tiny(run_dir, data=BIGGER, epochs=4)], launch=ray_settings(max_requeues=0))
    message = one_line(error.value)
    assert message.startswith(f"{run_dir} failed: its Ray worker died 1 time (--max-requeues 0)")
    assert run_status(run_dir) == "unfinished"  # its checkpoint is kept: a rerun resumes it


def test_c_an_unreachable_ray_address_is_one_line_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "exp"
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(LaunchError) as error:
        ensure_runs([tiny(out / "run")], launch=ray_settings(ray_address=address))
    assert time.monotonic() - start < 10
    message = one_line(error.value)
    assert f"--ray-address {address}: no Ray cluster answers there" in message and "ray start --head" in message
    assert not out.exists()


def test_d_storage_the_workers_cannot_see_is_one_line_and_writes_nothing(tmp_path, ray_cluster, monkeypatch):
    from reslab.experiments.launch.ray import RayLauncher

    # The driver "writes" its marker somewhere the workers do not look: they report it unseen.
    monkeypatch.setattr(RayLauncher, "_write_marker", lambda self, marker: None)
    out = tmp_path / "exp"
    with pytest.raises(LaunchError) as error:
        ensure_runs([tiny(out / "run")], launch=ray_settings())
    message = one_line(error.value)
    assert "--launcher ray: a worker on" in message and "cannot see" in message and str(out) in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_e_fractional_cpus_run_gpus_the_cluster_lacks_are_refused(tmp_path, ray_cluster):
    [outcome] = ensure_runs([tiny(tmp_path / "half" / "run", epochs=1, threads=0)], launch=ray_settings(cpus_per_run=0.5))
    assert outcome.finished and run_status(tmp_path / "half" / "run") == "finished"
    assert TrainConfig.from_dict(rundir.read_config(tmp_path / "half" / "run")).threads == 1

    out = tmp_path / "gpu"
    with pytest.raises(LaunchError) as error:
        ensure_runs([tiny(out / "run")], launch=ray_settings(gpus_per_run=1))
    assert "--gpus-per-run 1: asks 1 GPU per run but the Ray cluster has none" in one_line(error.value)
    assert not out.exists()


def test_a_runs_own_error_is_one_line_naming_the_run(tmp_path, ray_cluster):
    out = tmp_path / "bad"
    with pytest.raises(RunFailed) as error:
        ensure_runs([tiny(out / "run", model_options={"nope": 1})], launch=ray_settings())
    message = one_line(error.value)
    assert message.startswith(f"{out / 'run'} failed on ray node ") and "nope" in message


def test_f_a_cancelled_run_saves_its_checkpoint(tmp_path, ray_cluster):
    """ray.cancel (not forced) raises SIGINT in the task: the trainer finishes its step and saves."""
    from reslab.experiments.launch.base import make_launcher

    run_dir = tmp_path / "exp" / "run"
    (tmp_path / "exp").mkdir()
    data = BIGGER
    with make_launcher(ray_settings(), tmp_path / "exp") as launcher:
        handle = launcher.submit(launcher.worker_config(tiny(run_dir, data=data, epochs=6)))
        deadline = time.monotonic() + 60
        while not ((run_dir / rundir.METRICS_JSONL).is_file() and rundir.read_metrics(run_dir, partial_ok=True)):
            assert time.monotonic() < deadline and not handle.done()
            time.sleep(0.01)
        handle.cancel()
        while not handle.done():
            time.sleep(0.05)
        outcome = handle.outcome()
    assert not outcome.finished and outcome.stopped_by == "SIGINT"
    assert run_status(run_dir) == "unfinished"
    assert handle.where().startswith("ray node ")


def test_g_the_cli_starts_a_local_ray_cluster_and_stops_it(tmp_path):
    """Without --ray-address the command starts its own Ray cluster (in a fresh process, as a user's
    command does) and shuts it down at the end."""
    out = tmp_path / "exp"
    tiny_flags = ["--set", "data_options.num_train=64", "--set", "data_options.num_test=16", "--set",
                  "data_options.image_size=8", "--set", "batch_size=32", "--set", "threads=1"]
    command = [sys.executable, "-m", "reslab.cli.main", "experiment", "degradation", "--depths", "8", "--data",
               "synthetic", "--epochs", "1", "--quiet", *tiny_flags, "--launcher", "ray", "--cpus-per-run", "1",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                              str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))})
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("cifar_resnet8-s0", "cifar_plain8-s0"):
        assert run_status(out / name) == "finished"
    index = json.loads((out / "runs.json").read_text())
    assert "ray node" in json.dumps(index)
