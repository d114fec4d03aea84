"""Say plainly what weights exist; profile what the user has (a run, model options)."""

from __future__ import annotations

import json

import pytest
import torch

import reslab
from reslab.cli.main import main
from reslab.errors import ModelConfigError


def test_pretrained_is_refused_with_what_is_available_offline():
    with pytest.raises(ModelConfigError, match="ships no pretrained weights for this model.*resnet20 "
                                               r"\(pretrained='cifar10'\).*load_state_dict.*load_run"):
        reslab.create_model("resnet50", pretrained=True)
    with pytest.raises(ModelConfigError, match="no pretrained weights called 'imagenet'.*'cifar10'"):
        reslab.create_model("resnet20", pretrained="imagenet")
    with pytest.raises(ModelConfigError, match="no option 'weights'"):
        reslab.create_model("resnet20", weights="x.pth")


def test_shipped_resnet20_cifar10_loads_offline_with_its_record():
    model = reslab.create_model("resnet20", pretrained="cifar10")
    assert not model.training
    record = model.pretrained_cfg["record"]
    assert record["recipe"] == "cifar10-cpu" and record["epochs"] == 45 and record["seed"] == 0
    # The best public ResNet-20 weights we know reach 91.73 %; these, without test-time flips, more.
    assert record["test_accuracy"] >= 0.9173 and record["weights"] == "ema" and record["num_classes"] == 10
    assert record["command"] == "reslab train resnet20 --data cifar10 --recipe cifar10-cpu --epochs 45 --set ema=true"
    assert model.pretrained_cfg["class_names"][0] == "airplane" and len(model.pretrained_cfg["mean"]) == 3
    # The weights are the file's, not a fresh initialisation: two loads agree, a random model does not.
    again = reslab.create_model("resnet20", pretrained=True)
    fresh = reslab.create_model("resnet20")
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert not torch.allclose(model(x), fresh.eval()(x))
    # Trained BN statistics, not the initial ones (0 mean, unit variance).
    assert model.bn1.running_var.std() > 0.01


def test_pretrained_refuses_another_head_or_architecture_naming_the_tensor():
    with pytest.raises(ModelConfigError, match="has 10 classes, num_classes=5.*model.fc"):
        reslab.create_model("resnet20", pretrained="cifar10", num_classes=5)
    with pytest.raises(ModelConfigError, match="layer2.0.downsample.0.weight.*lack"):
        reslab.create_model("resnet20", pretrained="cifar10", shortcut="B")
    with pytest.raises(ModelConfigError, match=r"conv1.weight is \(16, 3, 3, 3\) in the weights but \(16, 1, 3, 3\)"):
        reslab.create_model("resnet20", pretrained="cifar10", in_chans=1)
    # Options that leave the parameters alone are fine.
    assert reslab.create_model("resnet20", pretrained="cifar10", drop_path=0.1).pretrained_cfg["tag"] == "cifar10"


def test_profile_lists_the_shipped_weights(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--pretrained"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "resnet20 pretrained='cifar10', test accuracy 9" in out and "recipe cifar10-cpu" in out
    assert "reslab eval resnet20 --pretrained cifar10" in out
    with pytest.raises(SystemExit):
        main(["profile", "resnet20"])
    assert "create_model('resnet20', pretrained='cifar10')" in capsys.readouterr().out


def test_eval_pretrained_on_a_dataset_with_other_classes_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "resnet20", "--pretrained", "cifar10", "--data", "digits"])
    assert exit_info.value.code != 0
    assert "10 classes and 1 channel" in capsys.readouterr().err


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


def test_eval_pretrained_runs_on_data_with_the_same_classes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "resnet20", "--pretrained", "cifar10", "--data", "synthetic", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 0 and result["count"] == 256 and result["recorded_test_accuracy"] > 0.9
