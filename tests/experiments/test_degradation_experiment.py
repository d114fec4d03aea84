"""The degradation experiment on tiny CIFAR-style nets (depths 8 and 14) and synthetic 8x8 images."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from reslab.cli.main import build_parser
from reslab.errors import ConfigError
from reslab.experiments import run_degradation, run_status, twin_models, validate_depths
from reslab.experiments.degradation import resolve_seeds
from reslab.train import TrainConfig, rundir, train

TINY = {"data_options": {"num_train": 64, "num_test": 32, "image_size": 8}, "batch_size": 32, "threads": 1}
RUNS = ("cifar_resnet8-s0", "cifar_plain8-s0", "cifar_resnet14-s0", "cifar_plain14-s0")
TOP_KEYS = {"experiment", "format", "dataset", "data_source", "recipe", "epochs", "seeds", "depths", "runs"}
RUN_KEYS = {"run", "model", "kind", "depth", "seed", "final_train_error", "final_test_error", "best_test_error",
            "curve"}
CURVE_KEYS = {"epoch", "iteration", "train_error", "test_error", "train_loss", "test_loss"}


def tiny_experiment(out: Path, depths=(8, 14), epochs: int = 1, **kwargs):
    return run_degradation(list(depths), "synthetic", epochs=epochs, overrides={**TINY, **kwargs.pop("extra", {})},
                           out=out, quiet=True, **kwargs)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One finished 2-depth experiment, shared by the tests that only read it (or rerun it)."""
    out = tmp_path_factory.mktemp("degradation") / "exp"
    return tiny_experiment(out)


def test_writes_one_run_per_network_and_the_documented_summary(experiment):
    out = experiment.experiment_dir
    assert experiment.complete
    for name in RUNS:
        assert run_status(out / name) == "finished"
        assert (out / name / "checkpoints" / "last.safetensors").is_file()

    summary = json.loads((out / "degradation.json").read_text())
    assert TOP_KEYS <= set(summary)
    assert summary["experiment"] == "degradation" and summary["format"] == 1
    assert summary["dataset"] == "synthetic" and summary["depths"] == [8, 14] and summary["seeds"] == [0]
    assert summary["command"].startswith("reslab experiment degradation --depths 8 14 --data synthetic")
    assert sorted(r["run"] for r in summary["runs"]) == sorted(RUNS)
    for run in summary["runs"]:
        assert RUN_KEYS <= set(run)
        assert run["kind"] == ("plain" if "plain" in run["model"] else "residual")
        assert run["run"] == f"{run['model']}-s0" and run["depth"] in (8, 14)
        assert set(run["curve"]) == CURVE_KEYS and run["curve"]["epoch"] == [1]
        # The summary is the run's own metrics, not a recomputation.
        metrics = rundir.read_metrics(out / run["run"])
        assert run["final_train_error"] == metrics[-1]["train_error"]
        assert run["final_test_error"] == metrics[-1]["test_error"]
        assert run["curve"]["iteration"] == [m["iteration"] for m in metrics]
        for key in ("final_train_error", "final_test_error", "best_test_error"):
            assert 0.0 <= run[key] <= 1.0

    with (out / "degradation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["run"] for row in rows) == sorted(RUNS)
    with (out / "degradation_curves.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4  # 4 runs x 1 epoch
    for name in ("degradation_curves.png", "degradation_depth.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cifar_plain14" in experiment.table() and "residual" in experiment.table()


def test_twins_share_recipe_and_seed(experiment):
    """Plain and residual runs differ in the model only: same recipe, settings and seed."""
    out = experiment.experiment_dir
    residual = TrainConfig.from_dict(rundir.read_config(out / "cifar_resnet14-s0")).to_dict()
    plain = TrainConfig.from_dict(rundir.read_config(out / "cifar_plain14-s0")).to_dict()
    differing = {k for k in residual if residual[k] != plain[k]}
    assert differing == {"model", "out"}


def test_rerun_reuses_finished_runs_without_training(experiment):
    out = experiment.experiment_dir
    states = {name: rundir.state_path(out / name) for name in RUNS}
    before = {name: path.stat().st_mtime_ns for name, path in states.items()}
    again = tiny_experiment(out)
    assert again.trained == 0
    assert {o.action for o in again.outcomes} == {"reused"}
    assert {name: path.stat().st_mtime_ns for name, path in states.items()} == before
    assert again.runs == experiment.runs


def test_changed_settings_are_refused(experiment):
    with pytest.raises(ConfigError, match="lr"):
        tiny_experiment(experiment.experiment_dir, extra={"lr": 0.05})


def test_interrupted_and_unstarted_runs_are_resumed_or_restarted(tmp_path):
    out = tmp_path / "exp"
    first = tiny_experiment(out, depths=(8,), epochs=2)
    reference = {r["run"]: r for r in first.runs}

    # An interrupted run: redo the residual one, stopping after its first epoch of two.
    residual = out / "cifar_resnet8-s0"
    config = TrainConfig.from_dict(rundir.read_config(residual))
    shutil.rmtree(residual)
    stopped = train(config, stop_after_epoch=1)
    assert not stopped.finished and run_status(residual) == "unfinished"
    # A run that died in its first epoch: config.json written, no checkpoint yet.
    plain = out / "cifar_plain8-s0"
    shutil.rmtree(plain / "checkpoints")
    assert run_status(plain) == "empty"

    again = tiny_experiment(out, depths=(8,), epochs=2)
    actions = {Path(o.run_dir).name: o.action for o in again.outcomes}
    assert actions == {"cifar_resnet8-s0": "resumed", "cifar_plain8-s0": "restarted"}
    for run in again.runs:
        assert run["epochs"] == 2
        # Resuming continues the same trajectory: the same numbers as the uninterrupted runs.
        assert run["final_train_error"] == reference[run["run"]]["final_train_error"]
        assert run["final_test_error"] == reference[run["run"]]["final_test_error"]


@pytest.mark.parametrize("depth", [21, 5, 0, -4, 111])
def test_bad_depth_is_a_config_error(depth, tmp_path):
    with pytest.raises(ConfigError, match=rf"--depths: {depth} is not a valid depth.*6n\+2"):
        run_degradation([20, depth], "synthetic", out=tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists()


def test_cli_bad_depth_is_one_line_and_exit_2(tmp_path, capsys):
    from reslab.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "degradation", "--depths", "20", "50", "57", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "57 is not a valid depth" in err[0] and "the nearest are 56 and 62" in err[0]


def test_depths_seeds_and_model_names():
    assert validate_depths([56, 20, 20, 110]) == [20, 56, 110]
    assert twin_models(20) == ("resnet20", "plain20")
    assert twin_models(8) == ("cifar_resnet8", "cifar_plain8")
    assert twin_models(50) == ("cifar_resnet50", "cifar_plain50")  # resnet50 is the ImageNet bottleneck net
    assert resolve_seeds() == [0] and resolve_seeds(3) == [0, 1, 2] and resolve_seeds(seed=7) == [7]
    with pytest.raises(ConfigError, match="not both"):
        resolve_seeds(2, 1)
    with pytest.raises(ConfigError, match="seed"):
        run_degradation([8], "synthetic", overrides={"seed": 3}, quiet=True)


def test_cli_arguments_reach_the_experiment():
    args = build_parser().parse_args(["experiment", "degradation", "--depths", "8", "14", "--data", "cifar10",
                                      "--data-dir", "d", "--seeds", "3", "--epochs", "2", "--set", "lr=0.05",
                                      "--jobs", "2", "--out", "o", "--quiet"])
    assert (args.depths, args.data, args.data_dir, args.seeds, args.epochs) == ([8, 14], "cifar10", "d", 3, 2)
    assert (args.settings, args.jobs, args.out, args.quiet) == (["lr=0.05"], 2, "o", True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "degradation", "--seeds", "2", "--seed", "1"])


@pytest.mark.slow
def test_parallel_jobs_give_the_same_numbers(experiment, tmp_path):
    """Two worker processes, one thread each: the same runs and numbers as one after the other."""
    lines: list[str] = []
    parallel = tiny_experiment(tmp_path / "exp", jobs=2, say=lines.append)
    assert {o.action for o in parallel.outcomes} == {"trained"}
    # Workers train quietly; the parent reports their epochs from the metrics files.
    for name in RUNS:
        assert any(line.startswith(f"{name}: epoch 1/1, train error ") for line in lines)
    strip = lambda runs: sorted(({k: v for k, v in r.items() if k != "train_time_s"} for r in runs),  # noqa: E731
                                key=lambda r: r["run"])
    assert strip(parallel.runs) == strip(experiment.runs)
