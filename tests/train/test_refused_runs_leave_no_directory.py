"""A run refused for a bad setting creates no run directory (not even one holding only ``.lock``)."""

from __future__ import annotations

import pytest

from reslab.cli.main import main


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
    (["--set", "data_options.nope=1"], "does not take option(s) nope"),
    (["--set", "model_options.nope=1"], "unknown option(s) nope"),
    (["--batch-size", "100000"], "larger than the training set"),
    (["--set", "data_options.classes=[5]"], "keeps 1 class"),
])
def test_train_with_a_bad_setting_leaves_no_run_directory(tmp_path, capsys, extra, message):
    out = tmp_path / "deep" / "run"
    code, err = run_cli(["train", "cifar_resnet8", "--data", "digits", "--epochs", "1", "--device", "cpu", "--quiet",
                         "--out", str(out), *extra], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "deep").exists()


def test_train_of_an_unknown_model_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(["train", "tranformer4", "--data", "text", "--out", str(out)], capsys)
    assert code == 2 and "did you mean transformer4" in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--set", "data_options.nope=1"], "does not take option(s) nope"),
    (["--set", "model_options.nope=1"], "unknown option(s) nope"),
    (["--batch-size", "100000"], "larger than the training set"),
])
def test_segmentation_training_with_a_bad_setting_leaves_no_run_directory(tmp_path, capsys, extra, message):
    out = tmp_path / "seg"
    code, err = run_cli(["train", "unet_resnet20", "--task", "segment", "--data", "shapes", "--epochs", "1",
                         "--set", "data_options.num_train=16", "--set", "data_options.num_test=4",
                         "--set", "data_options.image_size=32", "--device", "cpu", "--quiet", "--out", str(out),
                         *extra], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_good_run_still_holds_its_lock_file_and_is_not_started_twice(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "cifar_resnet8", "--data", "synthetic", "--set", "data_options.num_train=64",
            "--set", "data_options.num_test=16", "--set", "data_options.image_size=8", "--batch-size", "32",
            "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(out)]
    code, _ = run_cli(argv, capsys)
    assert code == 0 and (out / ".lock").is_file() and (out / "config.json").is_file()
    code, err = run_cli(argv, capsys)
    assert code == 2 and "already holds a finished run" in err
