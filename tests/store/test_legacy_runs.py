"""Runs written before run directories had a schema (``tests/store/legacy_runs``, see its README)
still load, evaluate and — for the classifier and the language model — resume; and new runs
follow the schema: ``format``, ``task``, each derived fact once, file names from the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reslab.cli.main import main
from reslab.store import rundir as schema
from reslab.train import load_run, resolve_config, train

LEGACY = Path(__file__).with_name("legacy_runs")


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("name, task, variant", [("classify", "classify", "residual"),
                                                 ("segment", "segment", "residual"),
                                                 ("language-model", "language-model", "residual")])
def test_runs_from_before_the_schema_still_load_and_evaluate(name, task, variant, tmp_path, capsys):
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run)
    config = schema.read_config(run)
    assert "format" not in config and schema.config_task(config) == task
    assert schema.config_variant(config) == variant
    loaded = load_run(run)
    assert loaded.task == task and not loaded.model.training
    code, out, err = run_cli(["eval", str(run)], capsys)
    assert code == 0, err
    assert {"classify": "accuracy", "segment": "mIoU", "language-model": "nats/char"}[task] in out


def test_an_old_classifier_resumes_and_an_old_segmentation_run_says_why_not(tmp_path, capsys):
    run = tmp_path / "classify"
    shutil.copytree(LEGACY / "classify", run)
    code, out, err = run_cli(["train", "--resume", str(run), "--epochs", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "2 epochs" in out
    config = schema.read_config(run)
    assert config["format"] == schema.CONFIG_FORMAT and config["task"] == "classify"
    old = tmp_path / "segment"
    shutil.copytree(LEGACY / "segment", old)
    code, _, err = run_cli(["train", "--resume", str(old), "--epochs", "2"], capsys)
    assert code == 2 and "segmentation run written before" in err and len(err.strip().splitlines()) == 1


def test_new_runs_follow_the_schema(tmp_path):
    result = train(resolve_config(model="cifar_resnet8", data="synthetic", overrides={
        "epochs": 1, "batch_size": 32, "quiet": True, "out": str(tmp_path / "run"),
        "data_options": {"num_train": 64, "num_test": 16, "image_size": 8}}))
    config = json.loads((result.run_dir / schema.CONFIG_FILE).read_text())
    assert config["format"] == schema.CONFIG_FORMAT and config["task"] == "classify"
    assert config["variant"] == "residual" and config["dataset"]["source"]
    # Each fact once: no copy of the data source, of the model options or of what the settings imply.
    for duplicate in ("data_source", "model_settings", "per_rank_batch"):
        assert duplicate not in config
    names = {p.name for p in (result.run_dir / schema.CHECKPOINT_DIR).iterdir()}
    assert names == {schema.INIT_WEIGHTS, schema.LAST_WEIGHTS, schema.STATE_FILE}
