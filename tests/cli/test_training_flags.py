"""The flags ``reslab train`` and ``reslab finetune`` share: --data's help lists what the registries load."""

from __future__ import annotations

import pytest

from reslab.cli.main import main
from reslab.data import DATASETS
from reslab.data.segmentation import SEGMENTATION_DATA


def help_text(command, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_train_flags_come_from_the_engine_settings(capsys):
    """One flag per engine setting with a flag, so a new setting is on the command line by itself."""
    from reslab.settings import option_of
    from reslab.train import TrainConfig
    import dataclasses

    train = help_text("train", capsys)
    for f in dataclasses.fields(TrainConfig):
        if option_of(f).cli:
            assert "--" + f.name.replace("_", "-") in train, f.name
    for flag in ("--model-option", "--data-option", "--task-option", "--set", "--task"):
        assert flag in train


def test_data_help_lists_every_registered_dataset(capsys):
    train = help_text("train", capsys)
    assert "text" in DATASETS and set(SEGMENTATION_DATA) == {"shapes", "segfolder"}
    assert f"dataset: {', '.join(DATASETS)}; for segmentation shapes, segfolder:DIR (default the recipe's)" in train
    assert "for text one UTF-8 text file" in train
    finetune = help_text("finetune", capsys)
    assert f"dataset to fine-tune on (required): {', '.join(DATASETS)}" in finetune
