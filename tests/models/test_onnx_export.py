"""ONNX export: the file runs in onnxruntime and computes what the model computes."""

import importlib.util

import pytest
import torch

import reslab
from reslab.errors import ConfigError
from reslab.models.export import export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("name, size, in_chans", [("resnet20", 16, 1), ("resnet18", 64, 3)])
def test_export_runs_in_onnxruntime(tmp_path, name, size, in_chans):
    torch.manual_seed(0)
    model = reslab.create_model(name, num_classes=7, in_chans=in_chans)
    with torch.no_grad():  # non-trivial BN statistics, so eval-mode export matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    model.train()  # export must use eval mode without changing the caller's model
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=size)
    assert model.training
    assert path.exists() and sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.onnx"]  # one file, no temp left

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    x = torch.randn(3, in_chans, size, size)  # a batch size other than the traced one
    (logits,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x)
    assert logits.shape == (3, 7)
    assert (torch.from_numpy(logits) - expected).abs().max() <= 1e-4


def test_export_without_onnx_installed_says_what_to_install(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxscript" else real_find_spec(name, *args))
    with pytest.raises(ConfigError, match=r"onnxscript.*reslab\[onnx\]"):
        export_onnx(reslab.create_model("resnet20"), tmp_path / "m.onnx", input_size=32)
    assert not any(tmp_path.iterdir())


def test_export_argument_errors(tmp_path):
    model = reslab.create_model("resnet20", in_chans=1)
    with pytest.raises(ConfigError, match="input_size"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(32,))
    with pytest.raises(reslab.ReslabError, match="in_chans=3 does not match"):
        export_onnx(model, tmp_path / "m.onnx", input_size=32, in_chans=3)


def test_default_input_size_follows_the_models_family():
    from reslab.models.export import default_input_size

    expected = {"resnet20": 32, "densenet_bc_52_12": 32, "unet_resnet20": 32, "unet_cifar_resnet8": 32,
                "resnet18": 224, "unet_resnet18": 64}
    with torch.device("meta"):  # shapes only: no weights are made
        sizes = {name: default_input_size(reslab.create_model(name), name) for name in expected}
    assert sizes == expected


def test_a_file_named_for_another_format_is_refused(tmp_path):
    from reslab.models.export import check_output_suffix, export_model

    with pytest.raises(ConfigError, match=r"m\.onnx: the suffix \.onnx says an ONNX file, but the format is "
                                          r"'torchscript'; name the file .*m\.torchscript\.pt, or export as 'onnx'"):
        export_model(reslab.create_model("cifar_resnet8"), tmp_path / "m.onnx", "torchscript", 8)
    assert not any(tmp_path.iterdir())
    check_output_suffix("model.bin", "onnx")  # a suffix of no format is the user's choice
