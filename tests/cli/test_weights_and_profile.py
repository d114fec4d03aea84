"""Say plainly what weights exist; profile what the user has (a run, model options)."""

from __future__ import annotations

import json

import pytest

import reslab
from reslab.cli.main import main
from reslab.errors import ModelConfigError


def test_pretrained_is_refused_with_what_is_available_offline():
    with pytest.raises(ModelConfigError, match="ships no pretrained weights.*load_state_dict.*load_run"):
        reslab.create_model("resnet50", pretrained=True)


def test_profile_takes_a_run_directory_and_model_options(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "cifar_resnet8", "model_options": {"shortcut": "B"},
                                                 "num_classes": 4, "in_chans": 1, "image_size": [8, 8]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", str(run)])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "shortcut=B" in out and "1×8×8, 4 classes" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "resnet20", "--attention", "se", "--set", "drop_path=0.1"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "attention=se, drop_path=0.1" in out
