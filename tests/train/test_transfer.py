"""Transfer learning: class subsets, fine-tuning from runs and state-dict files, freezing, the head's lr,
the CLI and the split experiment (small, on synthetic data and the digits)."""

from __future__ import annotations

import json

import pytest
import torch

from reslab.cli.main import main
from reslab.data import load_dataset, select_classes
from reslab.errors import CheckpointError, ConfigError, DatasetError
from reslab.experiments.transfer import run_transfer
from reslab.models import create_model
from reslab.train import finetune, finetune_config, load_run, train
from reslab.train.optim import build_optimizer
from reslab.train.transfer import adapt_input_conv, load_backbone, read_source

DATA = {"num_train": 128, "num_test": 32, "image_size": 8}


# -- class subsets --------------------------------------------------------------------------------
def test_select_classes_relabels_in_the_given_order_and_caps_each_class():
    ds = load_dataset("digits")
    sub = select_classes(ds, classes=["7", "2"], per_class=10)
    assert sub.class_names == ["7", "2"]
    assert sub.num_train == 20 and sub.train_labels.bincount().tolist() == [10, 10]
    # the first ten 7s of the file, relabelled 0
    sevens = torch.nonzero(ds.train_labels == 7).flatten()[:10]
    assert torch.equal(sub.train_images[sub.train_labels == 0], ds.train_images[sevens])
    assert sub.num_test == int(((ds.test_labels == 7) | (ds.test_labels == 2)).sum())
    assert sub.options["classes"] == ["7", "2"] and sub.options["per_class"] == 10
    # through load_dataset, as a string and by index
    assert load_dataset("digits", classes="3,5").class_names == ["3", "5"]
    assert load_dataset("synthetic", **DATA, classes=[0, 1]).num_classes == 2


@pytest.mark.parametrize("options, message", [
    ({"classes": ["seven"]}, "has no class 'seven'"),
    ({"classes": ["1", "1"]}, "names a class twice"),
    ({"classes": []}, "non-empty list"),
    ({"per_class": 0}, "per_class=0 must be an integer >= 1"),
    ({"classes": ["1"], "per_class": 100_000}, "fewer than 100000 training images"),
])
def test_select_classes_errors_name_the_problem(options, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("digits", **options)


# -- fine-tuning ----------------------------------------------------------------------------------
@pytest.fixture
def source_run(tiny_config):
    """A finished 10-class run of cifar_resnet8 on tiny synthetic data."""
    return train(tiny_config("source", epochs=1)).run_dir


def test_finetune_copies_all_but_the_head_freezes_and_records_its_origin(source_run, tmp_path):
    source = load_run(source_run).model
    result = finetune(source_run, data="synthetic", recipe="digits-quick", out=str(tmp_path / "ft"), epochs=2,
                      quiet=True, batch_size=32, device="cpu", lr=0.05, head_lr=0.5, freeze=["stem", "layer1"],
                      data_options={**DATA, "classes": [3, 4, 5]})
    tuned = result.model
    assert tuned.fc.out_features == 3
    before, after = source.state_dict(), tuned.state_dict()
    # frozen modules (weights and BN statistics) are the source's, bit for bit; later stages trained
    for key in [k for k in after if k.startswith(("conv1.", "bn1.", "layer1."))]:
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])
    # the fresh start (init checkpoint) held the source's body
    init = load_run(result.run_dir, "init").model.state_dict()
    assert torch.equal(init["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["init_from"] == str(source_run) and config["class_names"] == ["class_3", "class_4", "class_5"]
    record = config["transfer"]
    assert record["kind"] == "reslab run" and record["model"] == "cifar_resnet8" and record["head"] == "fc"
    assert record["source_head_shapes"]["fc.weight"][0] == 10 and record["frozen"] == ["conv1", "bn1", "layer1"]
    assert len(record["class_names"]) == 10


def test_finetune_resumes_with_its_record(source_run, tmp_path):
    config = finetune_config(source_run, data="synthetic", recipe="digits-quick", overrides={
        "out": str(tmp_path / "ft"), "epochs": 2, "quiet": True, "batch_size": 32, "device": "cpu",
        "data_options": DATA, "freeze": ["stem"]})
    first = train(config, stop_after_epoch=1)
    assert not first.finished
    resumed = train(resume=first.run_dir)
    assert resumed.finished
    saved = json.loads((first.run_dir / "config.json").read_text())
    assert saved["transfer"]["copied_tensors"] > 0


def test_head_lr_is_its_own_group_scaled_by_the_schedule(tiny_config):
    config = tiny_config(init_from="x", lr=0.1, head_lr=0.4, no_wd_on_bn_and_bias=True)
    model = create_model("cifar_resnet8", num_classes=4)
    optimizer = build_optimizer(model, config, head="fc")
    head = [g for g in optimizer.param_groups if g["name"].startswith("head_")]
    assert {id(p) for g in head for p in g["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert all(g["lr"] == pytest.approx(0.4) for g in head)
    from reslab.train.optim import set_lr

    set_lr(optimizer, 0.05)
    assert sorted({round(g["lr"], 6) for g in optimizer.param_groups}) == [0.05, 0.2]


def test_head_settings_without_a_source_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="init_from"):
        tiny_config(freeze=["stem"])


def test_torchvision_style_state_dict_files_load_with_model(tmp_path):
    reference = create_model("resnet18", num_classes=1000)
    nested = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}, "epoch": 3}
    torch.save(nested, tmp_path / "r18.pth")
    source = read_source(tmp_path / "r18.pth")
    assert source.model is None and source.origin["kind"] == "state-dict file"
    # the file's names as written; the prefix goes when they meet a model (map_names), with a note
    assert torch.equal(source.state["module.layer4.1.bn2.running_var"],
                       reference.state_dict()["layer4.1.bn2.running_var"])
    with pytest.raises(ConfigError, match="give it with --model"):
        finetune_config(tmp_path / "r18.pth", data="synthetic")
    model = create_model("resnet18", num_classes=5)
    done = load_backbone(model, source, "r18.pth")
    assert done["copied_tensors"] == len(reference.state_dict()) - 2
    assert torch.equal(model.layer3[0].downsample[0].weight, reference.layer3[0].downsample[0].weight)
    # another architecture: the first mismatching tensor and both shapes
    with pytest.raises(CheckpointError, match=r"no tensor 'layer1.2.conv1.weight' \(shape \(64, 64, 3, 3\)"):
        load_backbone(create_model("resnet34", num_classes=5), source, "r18.pth")
    # the same architecture with another tensor shape: that tensor and both shapes
    source.state["module.layer2.0.conv2.weight"] = source.state["module.layer2.0.conv2.weight"][:, :64]
    with pytest.raises(CheckpointError, match=r"layer2.0.conv2.weight has shape \(128, 64, 3, 3\) in the source "
                                              r"and \(128, 128, 3, 3\)"):
        load_backbone(create_model("resnet18", num_classes=5), source, "r18.pth")


def test_finetune_cli_end_to_end_and_its_errors(source_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", str(source_run), "--data", "synthetic", "--recipe", "digits-quick", "--epochs", "1",
              "--batch-size", "16", "--set", "data_options.num_train=128", "--set", "data_options.num_test=32",
              "--set", "data_options.image_size=8", "--classes", "0,1", "--freeze", "stem", "--freeze-bn",
              "--head-lr", "0.2", "--out", str(tmp_path / "cli"), "--quiet", "--device", "cpu"])
    assert exit_info.value.code == 0
    assert "cifar_resnet8 on synthetic: test accuracy" in capsys.readouterr().out
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["freeze_bn"] and config["head_lr"] == 0.2 and config["num_classes"] == 2
    for argv, message in [
        (["finetune", str(source_run)], "give the data to fine-tune on with --data"),
        (["finetune", str(tmp_path / "missing"), "--data", "digits"], "does not exist"),
        (["finetune", str(source_run), "--data", "synthetic", "--freeze", "layer9"], "has no module of that name"),
        (["finetune", str(source_run), "--data", "synthetic", "--freeze", "fc"], "always trained"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


# -- the experiment -------------------------------------------------------------------------------
def test_transfer_experiment_on_the_digits_writes_its_records_and_reuses_runs(tmp_path):
    settings = {"data": "digits", "out": str(tmp_path / "exp"), "pretrain_epochs": 2, "epochs": 2, "per_class": 20,
                "batch_size": 25, "quiet": True}
    result = run_transfer(**settings)
    summary = json.loads((tmp_path / "exp" / "transfer.json").read_text())
    variants = {r["variant"]: r for r in summary["records"]}
    assert set(variants) == {"pretrain", "finetuned", "scratch"}
    assert variants["pretrain"]["classes"] == ["0", "1", "2", "3", "4"]
    assert variants["finetuned"]["classes"] == ["5", "6", "7", "8", "9"] == variants["scratch"]["classes"]
    assert variants["finetuned"]["train_images"] == 100 == variants["scratch"]["train_images"]
    assert variants["finetuned"]["init_from"].endswith("pretrain") and variants["scratch"]["init_from"] is None
    expected = 100 * (variants["scratch"]["final_test_error"] - variants["finetuned"]["final_test_error"])
    assert summary["gain_points"] == pytest.approx(expected)
    assert "fine-tuned - scratch" in result.table()
    again = run_transfer(**settings)
    assert again.trained == 0
    from reslab.report import build_report

    report = build_report([tmp_path / "exp"], tmp_path / "report.html")
    assert "Transfer learning" in report.sections
    html = (tmp_path / "report.html").read_text()
    accuracy = 100 * (1 - variants["finetuned"]["final_test_error"])
    assert f"{accuracy:.2f}%" in html and "from scratch" in html
    with pytest.raises(ConfigError, match="share 5"):
        run_transfer(**settings, source_classes=("4", "5"))


def test_a_corrupt_state_dict_file_is_refused_without_torchs_unsafe_advice(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read as a PyTorch state dict") as info:
        read_source(bad)
    assert "weights_only" not in str(info.value)


def _run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# -- damaged files --------------------------------------------------------------------------------
def test_empty_weights_file_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.pth").write_bytes(b"")
    for argv in (["finetune", "empty.pth", "--model", "cifar_resnet8", "--data", "digits", "--out", "ft"],
                 ["bench", "infer", "cifar_resnet8", "--checkpoint", "empty.pth"],
                 ["eval", "cifar_resnet8", "--checkpoint", "empty.pth", "--data", "digits"]):
        code, out, err = _run_cli(argv, capsys)
        assert code == 2 and out == "", argv
        assert err.count("\n") == 1 and "error: 'empty.pth' is empty (0 bytes), so it holds no weights" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.pth"]


def test_a_truncated_pth_is_called_truncated_in_whole_words(tmp_path):
    file = tmp_path / "cut.pth"
    torch.save(create_model("cifar_resnet8").state_dict(), file)
    file.write_bytes(file.read_bytes()[:3000])
    with pytest.raises(CheckpointError) as info:
        read_source(file)
    message = str(info.value)
    assert "could not be read as a PyTorch state dict: it is truncated or damaged" in message
    assert "there is a high" not in message and "weights_only" not in message


def test_a_pickled_module_is_refused_naming_the_class_it_holds(tmp_path):
    torch.save(create_model("cifar_resnet8"), tmp_path / "whole_model.pth")
    with pytest.raises(CheckpointError, match=r"holds a pickled reslab\.models\.network\.ResNet object"):
        read_source(tmp_path / "whole_model.pth")


def test_truncated_standalone_safetensors_says_what_is_wrong_with_the_file(tmp_path):
    from safetensors.torch import save_file

    file = tmp_path / "weights.safetensors"
    save_file(create_model("cifar_resnet8").state_dict(), str(file))
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        read_source(file)
    message = str(info.value)
    assert "is truncated: its header lists" in message and "the file is not part of a run" in message
    assert "list_checkpoints" not in message and "another checkpoint of the run" not in message


# -- input channels -------------------------------------------------------------------------------
def test_adapting_the_first_convolution_keeps_the_output_of_equal_channel_images():
    """timm's in_chans rule: summed for one channel, repeated and scaled by 3/C for C channels, so an
    image whose channels are all equal gives what the source gave for its 3 equal channels (exactly
    for one channel and for multiples of 3)."""
    weight = torch.randn(8, 3, 3, 3)
    gray = torch.rand(2, 1, 6, 6)
    expected = torch.nn.functional.conv2d(gray.expand(-1, 3, -1, -1), weight)
    one, how = adapt_input_conv(weight, 1)
    assert how == "its 3-channel filters summed into one channel"
    torch.testing.assert_close(torch.nn.functional.conv2d(gray, one), expected)
    six, how = adapt_input_conv(weight, 6)
    assert six.shape == (8, 6, 3, 3) and how == "its 3-channel filters repeated to 6 channels and scaled by 3/6"
    torch.testing.assert_close(torch.nn.functional.conv2d(gray.expand(-1, 6, -1, -1), six), expected)
    four, _ = adapt_input_conv(weight, 4)
    torch.testing.assert_close(four, torch.cat([weight, weight[:, :1]], dim=1) * 0.75)


def test_channel_mismatch_is_adapted_not_blamed_on_the_architecture(tiny_config, tmp_path, capsys):
    """A grayscale run fine-tuned on RGB data: its architecture is right, only the channels differ."""
    gray = train(tiny_config("gray", data="digits", data_options={}, epochs=1, batch_size=64)).run_dir
    source = load_run(gray).model
    code, out, err = _run_cli(["finetune", str(gray), "--data", "synthetic", "--recipe", "digits-quick", "--epochs",
                               "1", "--batch-size", "32", "--set", "data_options.num_train=64", "--set",
                               "data_options.num_test=16", "--set", "data_options.image_size=8", "--out",
                               str(tmp_path / "rgb"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert ("input channels: fine-tuning source " in out + err
            and "was trained on 1-channel images, cifar_resnet8 here reads 3" in out + err)
    config = json.loads((tmp_path / "rgb" / "config.json").read_text())
    adapted = config["transfer"]["input_conv"]
    assert adapted["tensor"] == "conv1.weight" and adapted["source_channels"] == 1 and adapted["channels"] == 3
    start = load_run(tmp_path / "rgb", "init").model.conv1.weight
    torch.testing.assert_close(start, source.conv1.weight.repeat(1, 3, 1, 1) / 3)


def test_another_architecture_is_refused_before_the_run_directory_is_made(source_run, tmp_path, capsys):
    code, out, err = _run_cli(["finetune", str(source_run), "--model", "cifar_resnet14", "--data", "synthetic",
                               "--out", str(tmp_path / "ft")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "does not match cifar_resnet14" in err and "the source is a cifar_resnet8: pass --model cifar_resnet8" in err
    assert not (tmp_path / "ft").exists()
