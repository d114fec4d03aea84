"""State-dict files from other people's code as ``MODEL --checkpoint FILE``: every file kind and wrapper,
renamed classifiers, channels and classes from the data, the normalisation, and the errors (tiny
models on the embedded digits)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from reslab.data import load_dataset
from reslab.errors import CheckpointError, ConfigError
from reslab.train import load_run
from reslab.train.loading import load_file, load_source


@pytest.fixture(scope="module")
def theirs(public_cifar_resnet):
    """A public-style ResNet-8 for the digits (1 channel, 10 classes) with BN statistics that matter."""
    torch.manual_seed(1)
    model = public_cifar_resnet.resnet(8, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _renamed(state, old, new):
    return {(new + k[len(old):] if k.startswith(old + ".") else k): v for k, v in state.items()}


def _write(kind: str, state: dict, directory: Path) -> Path:
    """``state`` saved the way another library saves its weights."""
    if kind == "akamaster.th":  # the public CIFAR ResNet code's files: DataParallel names, a metric beside
        payload = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": torch.tensor(92.6)}
    elif kind == "timm.pth.tar":  # timm's train script: its args namespace, optimizer state and EMA weights
        payload = {"epoch": 3, "arch": "resnet8", "state_dict": _renamed(state, "linear", "head"),
                   "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}, "version": 2,
                   "args": argparse.Namespace(model="resnet8", lr=0.1, aug=["flip"]),
                   "state_dict_ema": {k: torch.zeros_like(v) for k, v in state.items()}, "metric": 71.5}
    elif kind == "lightning.ckpt":
        payload = {"epoch": 2, "state_dict": {f"model.{k}": v for k, v in state.items()}}
    elif kind == "compiled.pt":
        payload = {"model": {f"_orig_mod.{k}": v for k, v in state.items()}}
    elif kind == "hf.bin":
        payload = _renamed(state, "linear", "classifier")
    elif kind == "plain.pth":
        payload = state
    else:
        path = directory / kind
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    path = directory / kind
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("kind, entry, renamed", [
    ("akamaster.th", "state_dict", "linear"), ("timm.pth.tar", "state_dict", "head"),
    ("lightning.ckpt", "state_dict", "linear"), ("compiled.pt", "model", "linear"), ("hf.bin", None, "classifier"),
    ("plain.pth", None, "linear"), ("weights.safetensors", None, "linear")])
def test_state_dicts_of_other_code_load_from_every_file_kind(theirs, tmp_path, kind, entry, renamed):
    file = _write(kind, theirs.state_dict(), tmp_path)
    loaded = load_file("cifar_resnet8", file, model_options={"shortcut_pad": "both"})
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), theirs(x), rtol=0, atol=1e-5)
    record = loaded.config["weights_file"]
    assert record["entry"] == entry and record["renamed"] == {renamed: "fc"}
    assert f"classifier: the source's {renamed}.* is cifar_resnet8's fc.*" in record["notes"]
    assert loaded.run_dir is None and loaded.config["in_chans"] == 1 and loaded.config["num_classes"] == 10
    assert loaded.config["model_options"] == {"shortcut_pad": "both"}


def test_without_shortcut_pad_a_note_says_the_convention_may_be_wrong(theirs, tmp_path):
    file = _write("akamaster.th", theirs.state_dict(), tmp_path)
    notes = load_file("cifar_resnet8", file).config["weights_file"]["notes"]
    assert any("shortcut_pad=both" in note and "docs/models.md" in note for note in notes)


def test_a_mismatching_file_names_the_first_tensor_and_both_shapes(theirs, tmp_path):
    file = _write("plain.pth", theirs.state_dict(), tmp_path)
    with pytest.raises(CheckpointError, match=r"does not match cifar_resnet14: it has no tensor 'layer1\.1\.conv1\.weight' "
                                              r"\(shape \(16, 16, 3, 3\).*as MODEL"):
        load_file("cifar_resnet14", file)
    with pytest.raises(CheckpointError, match=r"conv1\.weight has shape \(16, 1, 3, 3\) in the source and "
                                              r"\(64, 1, 7, 7\) in resnet18"):
        load_file("resnet18", file)


def test_classes_and_channels_come_from_the_data(theirs, tmp_path):
    file = _write("plain.pth", theirs.state_dict(), tmp_path)
    digits = load_dataset("digits")
    loaded = load_file("cifar_resnet8", file, dataset=digits)
    assert loaded.class_names == digits.class_names and loaded.image_size == (8, 8)
    rgb = load_dataset("synthetic", num_train=16, num_test=8, image_size=8, num_classes=10)
    on_rgb = load_file("cifar_resnet8", file, dataset=rgb)
    assert on_rgb.model.conv1.in_channels == 3 and on_rgb.config["weights_file"]["input_conv"]["channels"] == 3
    five = load_dataset("digits", classes=[0, 1, 2, 3, 4])
    with pytest.raises(ConfigError, match=r"has a 10-way classifier \(fc.weight \(10, 64\)\), but 'digits' has 5 classes"):
        load_file("cifar_resnet8", file, dataset=five)
    assert load_file("cifar_resnet8", file, dataset=five, check_classes=False).config["num_classes"] == 10


def test_the_normalisation_is_the_given_one_or_the_datas_and_is_recorded(theirs, tmp_path):
    file = _write("plain.pth", theirs.state_dict(), tmp_path)
    digits = load_dataset("digits")
    given = load_file("cifar_resnet8", file, dataset=digits, mean=[0.5], std=[0.25])
    assert given.mean == (0.5,) and given.std == (0.25,) and given.config["normalization"] == "given with --mean/--std"
    default = load_file("cifar_resnet8", file, dataset=digits)
    assert default.mean == pytest.approx(digits.mean) and "training statistics of digits" in default.config["normalization"]
    with pytest.raises(ConfigError, match="--mean 0.5,0.5: expected 1 finite numbers"):
        load_file("cifar_resnet8", file, dataset=digits, mean=[0.5, 0.5], std=[0.25])
    with pytest.raises(ConfigError, match="give --mean and --std together"):
        load_file("cifar_resnet8", file, mean=[0.5])
    with pytest.raises(ConfigError, match="input normalisation of .* is unknown: give the mean and std"):
        load_file("cifar_resnet8", file).mean  # noqa: B018


def test_a_weights_file_where_a_run_is_expected_points_to_model_checkpoint(theirs, tmp_path):
    file = _write("plain.pth", theirs.state_dict(), tmp_path)
    with pytest.raises(CheckpointError, match=r"weights file outside any run.*MODEL --checkpoint .*plain\.pth"):
        load_run(file)
    with pytest.raises(ConfigError, match="cifar_resnet8 is a model name: give its weights with --checkpoint FILE"):
        load_source("cifar_resnet8")
    with pytest.raises(ConfigError, match="--model-option describe the weights of MODEL --checkpoint FILE"):
        load_source(tmp_path, model_options={"shortcut_pad": "both"})
