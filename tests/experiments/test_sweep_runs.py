"""``reslab sweep``: runs identified by their settings, an index, status, resume after the driver dies, one driver.

The runs are tiny CIFAR-style nets on synthetic 8x8 images, trained by the local launcher in
worker processes (the Slurm and Ray launchers have their own tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.experiments.grid import parse_grid, plan_grid, run_grid_sweep
from reslab.experiments.index import INDEX_FILE, run_states
from reslab.experiments.launch.base import LaunchError, LaunchSettings, make_launcher
from reslab.experiments.runs import run_id
from reslab.store import rundir
from reslab.store.lock import RunDirLockedError, check_unlocked
from reslab.train import resolve_config

TINY = ["--set", "data_options.num_train=512", "--set", "data_options.num_test=64", "--set",
        "data_options.image_size=8", "--set", "batch_size=32", "--set", "threads=1"]
TINY_SETTINGS = {"data_options": {"num_train": 512, "num_test": 64, "image_size": 8}, "batch_size": 32, "threads": 1}
ROOT = Path(__file__).resolve().parents[2]


def sweep_command(out: Path, epochs: int, lrs: str = "0.02,0.05,0.1", jobs: int = 2) -> list[str]:
    return [sys.executable, "-m", "reslab", "sweep", "run", "--model", "cifar_resnet8", "--data", "synthetic",
            "--epochs", str(epochs), *TINY, "--grid", f"lr={lrs}", "--jobs", str(jobs), "--out", str(out)]


def reslab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reslab", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def locked(path: Path) -> bool:
    try:
        check_unlocked(path)
    except RunDirLockedError:
        return True
    return False


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # state, ppid, ... (the name may hold spaces)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has exited (only no one has reaped it)


def epochs_done(run_dir: Path) -> int:
    return len(rundir.read_metrics(run_dir, partial_ok=True)) if (run_dir / rundir.METRICS_JSONL).is_file() else 0


# -- ids ------------------------------------------------------------------------------------------
def test_a_runs_id_is_its_settings_seed_included_not_where_or_how_long():
    config = resolve_config(None, model="cifar_resnet8", data="synthetic", overrides={"lr": 0.1, "epochs": 2})
    assert run_id(config) == run_id(resolve_config(None, model="cifar_resnet8", data="synthetic",
                                                   overrides={"lr": 0.1, "epochs": 2}))
    assert len(run_id(config)) == 12
    assert run_id(config.replace(seed=1)) != run_id(config)
    assert run_id(config.replace(lr=0.2)) != run_id(config)
    # Where it trains, with how many threads, and its length (a longer run extends it) are not what it is.
    assert run_id(config.replace(out="/elsewhere", threads=3, epochs=9, quiet=True)) == run_id(config)


def test_grid_points_times_seeds_each_get_a_directory_named_by_what_varies_and_its_id(tmp_path):
    settings = {"out": str(tmp_path / "s"), "model": "cifar_resnet8", "data": "synthetic", "epochs": 1,
                "grid": parse_grid(["lr=0.05,0.1", "weight_decay=0,1e-4"]), "seeds": (0, 1)}
    runs = plan_grid(__import__("reslab.experiments.grid", fromlist=["x"]).GridSweepSettings.of(settings))
    assert len(runs) == 8 and len({r.run_id for r in runs}) == 8
    first = runs[0]
    assert first.name == f"lr0.05-weight_decay0-s0-{first.run_id[:8]}"
    assert first.config.seed == 0 and first.config.lr == 0.05 and Path(first.config.out).parent == tmp_path / "s"
    assert not (tmp_path / "s").exists()  # planning writes nothing


@pytest.mark.parametrize("pairs, words", [
    (["lr"], "expected KEY=V1,V2"),
    (["lr=0.1", "lr=0.2"], "given twice"),
])
def test_a_malformed_grid_is_one_line(pairs, words):
    with pytest.raises(ConfigError, match=words):
        parse_grid(pairs)


@pytest.mark.parametrize("argv, words", [
    (["--grid", "nonsense=1,2"], "'nonsense' is not a training setting"),
    (["--grid", "seed=1,2"], "sets each run's seed itself"),
    (["--launcher", "kubernetes"], "--launcher 'kubernetes': unknown; choose one of local, slurm, ray"),
    (["--max-parallel", "2"], "--max-parallel: only for --launcher slurm or ray"),
    (["--launcher", "ray", "--timeout-min", "5"], "--timeout-min: a Slurm setting"),
    (["--slurm-partition", "gpu"], "--slurm-partition: a Slurm setting; give it with --launcher slurm"),
    (["--ray-address", "auto"], "--ray-address: a Ray setting; give it with --launcher ray"),
    (["--launcher", "ray", "--jobs", "2"], "--jobs 2: the local launcher's; with --launcher ray"),
    (["--launcher", "ray", "--ray-address", "127.0.0.1:1"], "127.0.0.1:1"),
    (["--grid", "lr=a,b"], "--grid lr: lr='a' is not valid; expected a number"),
])
def test_bad_sweep_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "run", "--model", "cifar_resnet8", "--data", "synthetic", "--grid", "lr=0.1", *argv,
              "--out", str(out)] if "--grid" not in argv else
             ["sweep", "run", "--model", "cifar_resnet8", "--data", "synthetic", *argv, "--out", str(out)])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and words in error, error
    assert not out.exists()


def test_a_missing_extra_is_one_line_saying_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(LaunchError, match=r"--launcher ray needs ray, which is not installed: pip install 'reslab\[ray\]'"):
        make_launcher(LaunchSettings(launcher="ray"), tmp_path)
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        main(["sweep", "run", "--model", "cifar_resnet8", "--data", "synthetic", "--epochs", "1", *TINY,
              "--grid", "lr=0.1", "--launcher", "ray", "--out", str(out)])
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["reslab sweep: error: --launcher ray needs ray, which is not installed: pip install 'reslab[ray]'"]
    assert not out.exists()


# -- run, status, resume ---------------------------------------------------------------------------
def test_a_sweep_indexes_its_runs_shows_their_status_and_reruns_nothing_finished(tmp_path, capsys):
    out = tmp_path / "sweep"
    result = run_grid_sweep(out=str(out), model="cifar_resnet8", data="synthetic", epochs=2,
                            overrides=TINY_SETTINGS, grid={"lr": [0.05, 0.1]}, jobs=2, quiet=True)
    assert result.complete and len(result.summary["runs"]) == 2
    index = json.loads((out / INDEX_FILE).read_text())
    assert [r["state"] for r in index["runs"]] == ["finished", "finished"]
    assert {r["id"] for r in index["runs"]} == {r["id"] for r in result.summary["runs"]}
    assert all(r["where"].startswith("pid ") for r in index["runs"])
    states = run_states(out)
    assert [(s.status, s.epochs_text()) for s in states] == [("finished", "2/2")] * 2

    main_code = _run_main(["sweep", "status", str(out)])
    printed = capsys.readouterr().out
    assert main_code == 0 and "2 finished" in printed and states[0].name in printed

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoints/*")}
    assert _run_main(["sweep", "resume", str(out)]) == 0
    captured = capsys.readouterr()
    assert "reslab sweep resume: reslab sweep run" in captured.err and "lr0.05-s0-" in captured.out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoints/*")} == stamps


def _run_main(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def test_sweep_status_and_resume_refuse_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    assert _run_main(["sweep", "status", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert _run_main(["sweep", "status", str(tmp_path)]) == 2
    assert "has no runs.json" in capsys.readouterr().err
    assert _run_main(["sweep", "resume", str(tmp_path)]) == 2
    assert "has no settings.json" in capsys.readouterr().err


def test_a_sweep_whose_driver_is_killed_resumes_reruns_no_finished_run_and_ends_as_if_uninterrupted(tmp_path):
    out = tmp_path / "sweep"
    driver = subprocess.Popen(sweep_command(out, epochs=30), cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        def one_finished_one_under_way() -> bool:
            runs = [p for p in out.glob("lr*") if p.is_dir()]
            finished = [p for p in runs if (p / rundir.CHECKPOINT_DIR).is_dir() and _finished(p)]
            # Well short of its end, so it cannot finish in the moment between this check and the kill.
            training = [p for p in runs if p not in finished and 2 <= epochs_done(p) <= 20]
            return bool(finished) and bool(training)

        wait_for(one_finished_one_under_way, 240, "a finished run and one under way")
        workers = children_of(driver.pid)
        assert workers
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    runs = sorted(p for p in out.glob("lr*") if p.is_dir())
    # The workers die with their driver (each saves its checkpoint first): nothing trains on.
    wait_for(lambda: not any(locked(p) for p in runs), 60, "the workers to let go of their runs")
    # ...and exit, rather than wait for work forever from a driver that is gone.
    wait_for(lambda: not any(alive(pid) for pid in workers), 60, f"the driver's processes {workers} to exit")
    finished = [p for p in runs if _finished(p)]
    unfinished = [p for p in runs if not _finished(p)]
    assert finished and unfinished
    stamps = {p: (p / rundir.CHECKPOINT_DIR / rundir.STATE_FILE).stat().st_mtime_ns for p in finished}
    states = {s.name: s.status for s in run_states(out)}
    assert {states[p.name] for p in unfinished} <= {"pending"} and {states[p.name] for p in finished} == {"finished"}

    resumed = reslab("sweep", "resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    for run in finished:
        assert f"{run.name}: already finished, reused" in resumed.stderr
        assert (run / rundir.CHECKPOINT_DIR / rundir.STATE_FILE).stat().st_mtime_ns == stamps[run]
    assert all(_finished(p) for p in runs)

    # The run that was cut short ends exactly as the same settings trained without a stop.
    cut = next(p for p in unfinished if epochs_done(p) == 30)
    reference = tmp_path / "reference"
    assert reslab("sweep", "run", "--model", "cifar_resnet8", "--data", "synthetic", "--epochs", "30", *TINY,
                  "--grid", f"lr={json.loads((cut / rundir.CONFIG_FILE).read_text())['lr']}", "--out",
                  str(reference), "--quiet").returncode == 0
    again = next(p for p in reference.glob("lr*") if p.is_dir())
    assert again.name == cut.name  # same settings, same id
    keys = ("epoch", "iteration", "train_loss", "test_loss", "test_error")
    assert [{k: m[k] for k in keys} for m in rundir.read_metrics(cut)] == \
        [{k: m[k] for k in keys} for m in rundir.read_metrics(again)]


def _finished(run_dir: Path) -> bool:
    from reslab.experiments.runs import run_status

    try:
        return run_status(run_dir) == "finished"
    except Exception:  # noqa: BLE001 - a checkpoint being written right now
        return False


def test_two_resumes_of_one_sweep_at_once_one_refuses(tmp_path):
    out = tmp_path / "sweep"
    first = subprocess.Popen(sweep_command(out, epochs=200, lrs="0.05", jobs=1), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "settings.json").is_file() and locked(out), 120, "the sweep to start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        wait_for(lambda: not locked(out), 30, "the killed driver's lock to go")
        resume_a = subprocess.Popen([sys.executable, "-m", "reslab", "sweep", "resume", str(out)], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: locked(out), 120, "the first resume to take the sweep")
            resume_b = reslab("sweep", "resume", str(out), timeout=120)
            assert resume_b.returncode == 2
            lines = resume_b.stderr.splitlines()  # the refusal alone, not what it would have run
            assert len(lines) == 1 and "experiment directory" in lines[0] and "being written by process" in lines[0]
            assert resume_a.poll() is None  # the first one goes on
        finally:
            resume_a.send_signal(signal.SIGINT)
            resume_a.wait(60)
    finally:
        if first.poll() is None:
            first.kill()
    # The interrupted run kept its checkpoint: it resumes, it does not start over.
    run = next(p for p in out.glob("lr*") if p.is_dir())
    assert (run / rundir.CHECKPOINT_DIR / rundir.STATE_FILE).is_file()



def test_a_local_worker_whose_driver_dies_saves_its_run_then_exits_instead_of_waiting_for_work(tmp_path):
    """Multi-threaded workers (torch's threads) outlived a SIGKILLed driver, blocked on the pool's pipe."""
    out = tmp_path / "sweep"
    command = sweep_command(out, epochs=200, lrs="0.05,0.1") + ["--set", "threads=2"]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len([p for p in out.glob("lr*") if epochs_done(p) >= 1]) == 2, 240, "both runs to train")
        workers = children_of(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    try:
        wait_for(lambda: not any(alive(pid) for pid in workers), 60, f"the driver's processes {workers} to exit")
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    for run in out.glob("lr*"):  # each saved where it stopped
        assert (run / rundir.CHECKPOINT_DIR / "last.safetensors").is_file()
        assert not _finished(run)


def test_resume_works_on_the_directory_given_even_if_the_sweep_was_moved(tmp_path, capsys):
    first = tmp_path / "first"
    assert run_grid_sweep(out=str(first), model="cifar_resnet8", data="synthetic", epochs=1, overrides=TINY_SETTINGS,
                          grid={"lr": [0.05]}, quiet=True).complete
    moved = tmp_path / "moved"
    first.rename(moved)
    stamps = {p: p.stat().st_mtime_ns for p in moved.glob("*/checkpoints/*")}
    assert _run_main(["sweep", "resume", str(moved)]) == 0
    assert f"--out {moved}" in capsys.readouterr().err
    assert not first.exists()  # nothing trained again where the sweep used to be
    assert {p: p.stat().st_mtime_ns for p in moved.glob("*/checkpoints/*")} == stamps  # reused as it is


def test_local_sweep_runs_share_the_cores_unless_threads_are_set(tmp_path):
    from reslab.experiments.grid import GridSweepSettings
    from reslab.experiments.runs import cpu_count

    def threads(**changes):
        settings = {"out": str(tmp_path / "s"), "model": "cifar_resnet8", "data": "synthetic",
                    "grid": {"lr": [0.1]}, **changes}
        return plan_grid(GridSweepSettings.of(settings))[0].config.threads

    assert threads(jobs=2) == max(1, cpu_count() // 2)
    assert threads(jobs=1) == cpu_count()
    assert threads(jobs=2, overrides={"threads": 3}) == 3
    assert threads(launcher="ray") == 0  # the engine sets them from the CPUs a run gets


@pytest.mark.parametrize("model, data", [("unet_resnet18", "shapes"), ("transformer2", "text"),
                                         ("cifar_resnet8", "synthetic")])
def test_runs_of_every_task_are_checked_with_their_tasks_data(tmp_path, model, data):
    """A U-Net sweep was refused before it started: its runs' data were loaded as images."""
    from reslab.experiments.runs import check_runs

    config = resolve_config(None, model=model, data=data, overrides={"epochs": 1, "out": str(tmp_path / "run")})
    check_runs([config, config.replace(lr=config.lr / 2)])
    assert not (tmp_path / "run").exists()
