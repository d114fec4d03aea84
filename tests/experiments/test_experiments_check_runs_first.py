"""Every experiment checks all its runs before it creates EXP_DIR: a bad setting of any run is
refused in one line, nothing trains, and no directory is left behind."""

from __future__ import annotations

import pytest

from reslab.cli.main import build_parser, main
from reslab.experiments.transfer import TransferSettings
from reslab.settings import given

TINY = ["--set", "data_options.num_train=64", "--set", "data_options.num_test=16", "--set", "data_options.image_size=8",
        "--set", "batch_size=32", "--set", "threads=1"]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


@pytest.mark.parametrize("argv, message", [
    (["degradation", "--depths", "8", "14", "--data", "synthetic", *TINY, "--set", "data_options.nope=1"],
     "does not take option(s) nope"),
    (["degradation", "--depths", "8", "--data", "digits", "--set", "model_options.nope=1"], "unknown option(s) nope"),
    (["landscape", "--models", "cifar_resnet8", "cifar_plain8", "--data", "synthetic", *TINY,
      "--set", "model_options.nope=1"], "unknown option(s) nope"),
    (["landscape", "--models", "cifar_resnet8", "--data", "digits", "--set", "batch_size=5000"],
     "larger than the training set"),
    (["mlp", "--quick", "--data", "text"], "is text, but model"),
    (["rnn", "--quick", "--text", "."], "is a directory, expected a text file"),
])
def test_an_experiment_with_a_bad_run_setting_leaves_no_directory(tmp_path, capsys, argv, message):
    out = tmp_path / "exp"
    code, err = run_cli(["experiment", *argv, "--out", str(out), "--quiet"], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--freeze", "nope"], "--freeze 'nope': resnet20 has no module of that name"),
    (["--freeze", "stem,layer9"], "--freeze 'layer9'"),
    (["--target-classes", "7"], "--target-classes '7' names 1 class(es); a classifier needs at least 2"),
    (["--target-classes", ""], "--target-classes '' names 0 class(es)"),
    (["--target-classes", "7,8,8"], "names a class twice"),
    (["--per-class", "500"], "fewer than 500 training images"),
    (["--per-class", "5"], "--batch-size 64 is larger than the training set of 'digits' (25 images)"),
])
def test_transfer_experiment_refuses_a_bad_setting_before_the_pretraining_trains(tmp_path, capsys, extra, message):
    out = tmp_path / "exp"
    code, err = run_cli(["experiment", "transfer", "--data", "digits", "--out", str(out), "--quiet", *extra], capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()  # the pretraining run would be out/pretrain


@pytest.mark.parametrize("words", [["stem,layer1"], ["stem", "layer1"], ["stem,", "layer1"]])
def test_transfer_freeze_takes_commas_like_finetune(words):
    args = build_parser().parse_args(["experiment", "transfer", "--freeze", *words])
    assert TransferSettings.of(given(args, TransferSettings)).freeze == ("stem", "layer1")
