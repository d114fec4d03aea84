"""Analyses of trained run directories: checkpoints, learning rates, twin discovery, default outputs, report."""

from __future__ import annotations

import json

import pytest
import torch

from reslab.analysis.common import checkpoint_lr, find_twin_run, load_target, resolve_twin
from reslab.cli.main import main

DATA = {"num_train": 64, "num_test": 32, "image_size": 8, "channels": 1, "num_classes": 4}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two 1-epoch runs, a residual net and its plain twin, side by side like an experiment's runs."""
    from reslab.train import resolve_config, train

    root = tmp_path_factory.mktemp("experiment")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model in ("cifar_resnet8", "cifar_plain8"):
            config = resolve_config("digits-quick", model=model, overrides={
                "out": str(root / model), "epochs": 1, "batch_size": 32, "data": "synthetic",
                "data_options": dict(DATA), "quiet": True, "seed": 3})
            train(config)
    finally:
        torch.set_num_threads(threads)
    return root


def test_run_target_twin_and_learning_rate(experiment):
    target = load_target(experiment / "cifar_resnet8", checkpoint="last")
    assert target.label == "cifar_resnet8" and target.kind == "residual" and target.seed == 3
    assert target.dataset.num_classes == 4
    config = json.loads((experiment / "cifar_resnet8" / "config.json").read_text())
    assert target.normalization == (tuple(config["mean"]), tuple(config["std"]))  # as the run was trained
    x, y = target.samples("test", 8, seed=1)
    assert x.shape == (8, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (8,)
    assert find_twin_run(experiment / "cifar_resnet8") == experiment / "cifar_plain8"
    assert find_twin_run(experiment / "cifar_plain8") == experiment / "cifar_resnet8"
    twin = resolve_twin(target, "auto")
    assert twin.kind == "plain" and twin.run_dir == experiment / "cifar_plain8" and twin.checkpoint == "last"
    metrics = [json.loads(line) for line in (experiment / "cifar_resnet8" / "metrics.jsonl").read_text().splitlines()]
    assert checkpoint_lr(target) == pytest.approx(metrics[-1]["lr"])
    init = load_target(experiment / "cifar_resnet8", checkpoint="init")
    assert checkpoint_lr(init) == pytest.approx(metrics[0]["lr"])
    # init and last hold different weights: training moved them.
    changed = [not torch.equal(a, b) for a, b in zip(init.model.state_dict().values(), target.model.state_dict().values())]
    assert any(changed)


def test_cli_analyses_of_a_run_write_into_its_analysis_dir_and_make_a_report(experiment, capsys):
    run = experiment / "cifar_resnet8"
    for argv in (["gradients", str(run), "--twin", "--checkpoints", "init", "last", "--samples", "32",
                  "--classic-depth", "10"],
                 ["responses", str(run), "--twin", "--samples", "16"],
                 ["lesion", str(run), "--twin", "--draws", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["analyze", *argv, "--quiet"])
        assert exit_info.value.code == 0, capsys.readouterr().err
    analysis = run / "analysis"
    for name in ("gradients.json", "gradients.png", "gradients_classic.png", "responses.json", "responses.png",
                 "lesion.json", "lesion.png"):
        assert (analysis / name).is_file(), name
    gradients = json.loads((analysis / "gradients.json").read_text())
    labels = [s["label"] for s in gradients["series"]]
    assert labels == ["cifar_resnet8 @ init", "cifar_resnet8 @ last", "cifar_plain8 @ init", "cifar_plain8 @ last"]
    assert all(s["lr"] is not None and s["lr"] > 0 for s in gradients["series"])
    assert gradients["target"]["run_dir"] == str(run) and gradients["target"]["checkpoints"] == ["init", "last"]
    lesion = json.loads((analysis / "lesion.json").read_text())
    assert [s["checkpoint"] for s in lesion["series"]] == ["last", "last"]

    output = experiment / "report.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(experiment), "-o", str(output)])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for title in ("Runs", "Training curves", "Gradient flow", "Layer responses", "Lesion study"):
        assert title in printed
    html = output.read_text()
    assert "synthetic (random, seed 0)" in html  # the data source, from the runs' config.json
    assert html.count("data:image/png;base64,") == 5  # curves, gradients (2), responses, lesion


def test_model_option_with_a_run_is_refused(experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "responses", str(experiment / "cifar_resnet8"), "--model-option", "zero_init_last=true"])
    assert exit_info.value.code == 2
    assert "model names only" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["gradients", "responses", "lesion", "landscape", "hessian"])
@pytest.mark.parametrize("option, expected", [
    ("channels=3", "has 4 classes and 3 channel(s), but run"),      # would crash deep inside torch
    ("num_classes=2", "has 2 classes and 1 channel(s), but run"),   # would run and report nonsense
])
def test_every_analysis_refuses_data_the_run_was_not_trained_for(experiment, capsys, kind, option, expected):
    options = {**DATA, **dict([option.split("=")])}
    argv = ["analyze", kind, str(experiment / "cifar_resnet8"), "--data", "synthetic"]
    for key, value in options.items():
        argv += ["--data-option", f"{key}={value}"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--samples", "8", "--out", str(experiment / "refused")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert expected in err[0] and "trained for 4 classes and 1 channel(s)" in err[0]
    assert not (experiment / "refused").exists()


def test_a_twin_must_be_another_run_of_the_other_kind(experiment, capsys):
    run = str(experiment / "cifar_resnet8")
    for twin, message in ((run, "is the run being analysed"), ("cifar_resnet8", "is a residual network like")):
        with pytest.raises(SystemExit) as exit_info:
            main(["analyze", "responses", run, f"--twin={twin}", "--out", str(experiment / "refused")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err
