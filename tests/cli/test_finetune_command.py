"""``reslab finetune``: settings refused in one line before anything is written, and --freeze's syntax."""

from __future__ import annotations

import json

import pytest

from reslab.cli.main import main
from reslab.train import resolve_config, train

TINY = ["--set", "data_options.num_train=128", "--set", "data_options.num_test=32", "--set", "data_options.image_size=8"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished 10-class cifar_resnet8 run on tiny synthetic data (one epoch)."""
    out = tmp_path_factory.mktemp("source") / "run"
    config = resolve_config("digits-quick", model="cifar_resnet8", data="synthetic", overrides={
        "data_options": {"num_train": 128, "num_test": 32, "image_size": 8}, "batch_size": 32, "epochs": 1,
        "quiet": True, "device": "cpu", "out": str(out)})
    return train(config).run_dir


def finetune(source, out, *extra):
    return ["finetune", str(source), "--data", "synthetic", *TINY, "--recipe", "digits-quick", "--epochs", "1",
            "--batch-size", "16", "--device", "cpu", "--quiet", "--out", str(out), *extra]


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("classes, message", [
    ("", "--classes '' names 0 class(es); a classifier needs at least 2"),
    (" , ", "--classes ' , ' names 0 class(es)"),
    ("5", "--classes '5' names 1 class(es); a classifier needs at least 2"),
    ("5,5", "names a class twice"),
])
def test_empty_and_single_class_selections_are_refused_in_one_line(source_run, tmp_path, capsys, classes, message):
    out = tmp_path / "ft"
    code, _, err = run_cli(finetune(source_run, out, "--classes", classes), capsys)
    assert code == 2 and err.startswith("reslab finetune: error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--freeze", "stem,layer9"], "--freeze 'layer9': cifar_resnet8 has no module of that name"),
    (["--freeze", ","], "--freeze ',' names no module"),
    (["--classes", "0,nine"], "has no class 'nine'"),
    (["--per-class", "1000"], "fewer than 1000 training images"),
    (["--set", "model_options.nope=1"], "unknown option(s) nope"),
])
def test_a_bad_finetune_setting_leaves_no_run_directory(source_run, tmp_path, capsys, extra, message):
    out = tmp_path / "ft"
    code, _, err = run_cli(finetune(source_run, out, *extra), capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("freeze", [["stem,layer1"], ["stem, layer1"], ["stem layer1"], ["stem", "layer1"],
                                    ["stem,", "layer1"]])
def test_freeze_takes_commas_and_spaces_alike(source_run, tmp_path, capsys, freeze):
    """``--freeze stem layer1`` (separate words, as `experiment transfer` takes them) as well as commas."""
    out = tmp_path / "ft"
    code, _, _ = run_cli(finetune(source_run, out, "--classes", "0,1", "--freeze", *freeze), capsys)
    config = json.loads((out / "config.json").read_text())
    assert code == 0 and config["freeze"] == ["stem", "layer1"] and config["transfer"]["frozen"] == [
        "conv1", "bn1", "layer1"]
