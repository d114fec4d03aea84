"""The landscape experiment on tiny CIFAR-style twins (8 layers) and synthetic 8x8 images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from reslab.analysis.landscape import LandscapeResult
from reslab.cli.main import build_parser, main
from reslab.errors import ConfigError, ModelConfigError
from reslab.experiments import run_landscape_experiment, run_status
from reslab.report.landscape_plots import landscape_summary, load_landscape
from reslab.train import resolve_config, rundir, train

MODELS = ["cifar_resnet8", "cifar_plain8"]
RUNS = ("cifar_resnet8-s0", "cifar_plain8-s0")
TINY = {"data_options": {"num_train": 64, "num_test": 32, "image_size": 8}, "batch_size": 32, "threads": 1}
BUDGET = {"grid": "-1:1:5", "samples": 32, "hessian_samples": 32, "hessian_iterations": 5, "extreme_steps": 5,
          "trace_probes": 2, "workers": 1}
TOP_KEYS = {"experiment", "format", "created", "dataset", "data_source", "seed", "command", "settings", "seconds_now",
            "models", "figures"}
MODEL_KEYS = {"model", "kind", "run", "run_dir", "action", "reused_from", "test_error", "train_error", "epochs",
              "files", "random", "pca", "interp", "hessian", "loss_at_origin", "loss_rise_r0.5", "loss_rise_r1",
              "lambda_max", "lambda_min", "convexity_ratio", "trace"}
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(out: Path, **kwargs):
    options = {**BUDGET, **kwargs}
    return run_landscape_experiment(options.pop("models", MODELS), "synthetic", epochs=options.pop("epochs", 2),
                                    overrides=TINY, out=out, quiet=True, **options)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One finished experiment (trained here, every plane, Hessian), shared by the tests that read it."""
    return tiny(tmp_path_factory.mktemp("landscape") / "exp")


def test_writes_the_documented_comparison(experiment):
    out = experiment.experiment_dir
    assert experiment.complete and experiment.trained == 2
    summary = json.loads((out / "landscape.json").read_text())
    assert summary == experiment.summary
    assert TOP_KEYS <= set(summary)
    assert summary["experiment"] == "landscape" and summary["format"] == 1 and summary["dataset"] == "synthetic"
    assert summary["settings"]["grid"] == "-1:1:5" and summary["settings"]["samples"] == 32
    assert summary["command"].startswith("reslab experiment landscape --models cifar_resnet8 cifar_plain8")
    assert [m["run"] for m in summary["models"]] == list(RUNS)  # residual first
    directions = set()
    for entry in summary["models"]:
        assert MODEL_KEYS <= set(entry)
        assert entry["kind"] == ("plain" if "plain" in entry["model"] else "residual")
        run_dir = out / entry["run_dir"]
        assert run_status(run_dir) == "finished"
        # Trained here, with a checkpoint per epoch (the PCA plane needs them).
        assert (run_dir / "checkpoints" / "epoch_0002.safetensors").is_file()
        metrics = rundir.read_metrics(run_dir)
        assert entry["test_error"] == metrics[-1]["test_error"] and entry["epochs"] == 2
        assert set(entry["files"]) == {"random", "pca", "interp", "hessian"}
        for name in entry["files"].values():
            assert (out / name).is_file() and name.startswith(entry["run"] + "/analysis/")

        # The numbers are those of the saved surface, as the report computes them.
        data = load_landscape(out / entry["files"]["random"])
        assert data["complete"] and np.asarray(data["loss"]).shape == (5, 5)
        numbers = landscape_summary(data)
        assert entry["loss_at_origin"] == pytest.approx(data["origin_loss"])
        assert entry["loss_rise_r0.5"] == pytest.approx(numbers["rise@0.5"])
        assert entry["loss_rise_r1"] == pytest.approx(numbers["rise@1"])
        # Every model sees the same directions seed and the same images.
        directions.add((tuple(data["plane"]["seeds"]), data["settings"]["samples"], data["settings"]["sample_seed"]))

        # init, epoch 1, epoch 2, then the origin (last = epoch 2).
        assert np.asarray(load_landscape(out / entry["files"]["pca"])["trajectory"]).shape == (4, 2)
        interp = load_landscape(out / entry["files"]["interp"])
        assert np.asarray(interp["x"]).size == 9 and interp["plane"]["kind"] == "interp"

        hessian = json.loads((out / entry["files"]["hessian"]).read_text())
        assert entry["lambda_max"] == pytest.approx(hessian["lambda_max"])
        assert entry["trace"] == pytest.approx(hessian["trace"])
        assert entry["convexity_ratio"] == pytest.approx(abs(hessian["lambda_min"] / hessian["lambda_max"]))
        assert hessian["settings"]["samples"] == 32 and hessian["settings"]["top_k"] == 1
    assert len(directions) == 1

    assert summary["figures"] == ["landscape_random_2d.png", "landscape_random_2d_surface.png", "landscape_pca.png",
                                  "landscape_interp.png"]
    for name in summary["figures"]:
        assert (out / name).read_bytes()[:8] == PNG
    table = experiment.table()
    assert "cifar_plain8-s0" in table and "λmax" in table and "residual" in table


def test_report_shows_the_twins_side_by_side(experiment, tmp_path):
    from reslab.report import build_report

    report = build_report([experiment.experiment_dir], tmp_path / "report.html")
    assert "Loss landscape" in report.sections and "Curvature" in report.sections
    html = (tmp_path / "report.html").read_text()
    section = html[html.index("Residual vs plain: sharpness"):]
    # The comparison table comes first, then the random plane's figure holding both models.
    assert section.index("cifar_resnet8-s0") < section.index("cifar_plain8-s0")
    assert section.index("Random filter-normalised plane") < section.index("PCA plane of the training trajectory")
    random_part = section[section.index("Random filter-normalised plane"):section.index("PCA plane")]
    assert random_part.count("<img") == 3  # filled contours, contour lines, 3-D: each one figure of both models
    assert "cifar_resnet8-s0" in random_part and "cifar_plain8-s0" in random_part


def test_rerun_skips_finished_runs_and_grids(experiment):
    out = experiment.experiment_dir
    files = [out / f for entry in experiment.models for f in entry["files"].values()]
    before = {f: f.stat().st_mtime_ns for f in files}
    again = tiny(out)
    assert again.complete and again.trained == 0
    assert {o.action for o in again.outcomes} == {"reused"}
    for entry in again.models:
        assert not any(entry[k]["computed_now"] for k in ("random", "pca", "interp", "hessian"))
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert [m["lambda_max"] for m in again.models] == [m["lambda_max"] for m in experiment.models]


def test_reuse_links_finished_runs_without_training(experiment, tmp_path):
    source = experiment.experiment_dir
    source_files = {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()}
    result = tiny(tmp_path / "again", planes=["random"], hessian=False, reuse=[source])
    assert result.complete and result.trained == 0
    for entry in result.models:
        run_dir = tmp_path / "again" / entry["run"]
        assert entry["action"] == "linked" and entry["reused_from"] == str(source / entry["run"])
        assert (run_dir / "reused_from.json").is_file() and not (run_dir / "analysis" / "hessian.json").exists()
        # Checkpoints are hard links to the source's: no copy, and the source is never written.
        assert os.path.samefile(run_dir / "checkpoints" / "last.safetensors",
                                source / entry["run"] / "checkpoints" / "last.safetensors")
        # Same weights, directions and samples: the same surface as the source experiment's.
        reference = LandscapeResult.load(source / entry["run"] / "analysis" / "landscape_random_2d.npz")
        mine = LandscapeResult.load(run_dir / "analysis" / "landscape_random_2d.npz")
        np.testing.assert_allclose(mine.loss, reference.loss, rtol=1e-6)
        assert entry["lambda_max"] is None and "pca" not in entry
    assert {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()} == source_files
    # Rerun without --reuse: the linked runs are used as they are.
    assert tiny(tmp_path / "again", planes=["random"], hessian=False).trained == 0


def test_interrupted_grid_resumes_to_the_same_surface(experiment, tmp_path, monkeypatch):
    from reslab.analysis.landscape import LandscapeEvaluator

    calls = {"n": 0}
    evaluate = LandscapeEvaluator.evaluate

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # two chunks of 4 points done, then Ctrl-C
            raise KeyboardInterrupt
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(LandscapeEvaluator, "evaluate", interrupted)
    out = tmp_path / "resume"
    with pytest.raises(KeyboardInterrupt):
        tiny(out, models=MODELS[:1], planes=["random"], hessian=False, reuse=[experiment.experiment_dir])
    partial = out / RUNS[0] / "analysis" / "landscape_random_2d.partial.npz"
    assert partial.is_file() and not (out / "landscape.json").exists()
    monkeypatch.setattr(LandscapeEvaluator, "evaluate", evaluate)

    result = tiny(out, models=MODELS[:1], planes=["random"], hessian=False)
    saved = LandscapeResult.load(out / RUNS[0] / "analysis" / "landscape_random_2d.npz")
    assert result.complete and saved.complete and not partial.exists()
    assert saved.settings["points_evaluated_now"] == 26 - 8  # 25 grid points + the origin, 8 done before
    reference = LandscapeResult.load(experiment.experiment_dir / RUNS[0] / "analysis" / "landscape_random_2d.npz")
    np.testing.assert_allclose(saved.loss, reference.loss, rtol=1e-6)


def test_reused_runs_without_epoch_checkpoints_skip_the_pca_plane(tmp_path):
    """Runs of another experiment (no epoch checkpoints), one of them still training."""
    elsewhere = tmp_path / "degradation"
    for model in MODELS:
        config = resolve_config(None, model=model, data="synthetic",
                                overrides={**TINY, "epochs": 1, "quiet": True, "out": str(elsewhere / f"{model}-s0")})
        train(config)
    result = tiny(tmp_path / "exp", epochs=1, planes=["random", "pca"], hessian=False, grid="-1:1:3",
                  reuse=[elsewhere])
    assert result.complete and result.trained == 0
    for entry in result.models:
        assert "needs at least 2" in entry["pca"]["skipped"] and "pca" not in entry["files"]
        assert entry["random"]["grid_points"] == 9
    assert json.loads((tmp_path / "exp" / "landscape.json").read_text())["figures"] == [
        "landscape_random_2d.png", "landscape_random_2d_surface.png"]

    # A matching run that has not finished is refused, not silently trained over or compared.
    config = resolve_config(None, model="cifar_resnet8", data="synthetic",
                            overrides={**TINY, "epochs": 2, "seed": 1, "quiet": True,
                                       "out": str(elsewhere / "cifar_resnet8-s1")})
    train(config, stop_after_epoch=1)
    with pytest.raises(ConfigError, match="not finished"):
        tiny(tmp_path / "other", models=MODELS[:1], seed=1, reuse=[elsewhere])


def test_bad_arguments_are_specific_errors(tmp_path):
    with pytest.raises(ModelConfigError):
        tiny(tmp_path / "a", models=["resnet57"])
    with pytest.raises(ConfigError, match="--planes"):
        tiny(tmp_path / "b", planes=["hilly"])
    with pytest.raises(ConfigError, match="--reuse .*does not exist"):
        tiny(tmp_path / "c", reuse=[tmp_path / "missing"])
    with pytest.raises(ConfigError, match="--grid"):
        tiny(tmp_path / "d", grid="1:-1:5")
    with pytest.raises(ConfigError, match="--samples"):
        tiny(tmp_path / "e", samples=0)
    with pytest.raises(ConfigError, match="--set model"):
        run_landscape_experiment(MODELS, "synthetic", overrides={"model": "resnet20"}, out=tmp_path / "f", quiet=True)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device 'cuda'"):
            tiny(tmp_path / "g", device="cuda")
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def test_cli_parses_and_reports_errors_in_one_line(tmp_path, capsys):
    args = build_parser().parse_args(
        ["experiment", "landscape", "--models", "resnet20", "plain20", "--data", "cifar10", "--grid=-1:1:7",
         "--samples", "64", "--planes", "random", "interp", "--no-hessian", "--reuse", "runs/a", "runs/b",
         "--threads", "1", "--set", "lr=0.05", "--out", str(tmp_path / "x")])
    assert args.models == ["resnet20", "plain20"] and args.grid == "-1:1:7" and args.hessian is False
    assert args.planes == ["random", "interp"] and args.reuse == ["runs/a", "runs/b"] and args.settings == ["lr=0.05"]
    assert build_parser().parse_args(["experiment", "landscape"]).hessian is True

    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "landscape", "--models", "resnet20", "--data", "synthetic", "--reuse",
              str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reslab experiment: error: --reuse")
