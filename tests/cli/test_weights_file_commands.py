"""Every command that takes a run takes ``MODEL --checkpoint FILE`` too: eval, predict, export, bench infer
and the analyses, on a public-style CIFAR ResNet-8's state dict (classifier ``linear``, DataParallel
names, zero channels on both sides) and the embedded digits."""

from __future__ import annotations

import json

import pytest
import torch

from reslab.cli.main import main
from reslab.data import load_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def public_file(tmp_path, public_cifar_resnet):
    """A public-style ResNet-8 for the digits, saved as that code saves it (``.th``)."""
    torch.manual_seed(0)
    model = public_cifar_resnet.resnet(8, num_classes=10, in_chans=1).eval()
    path = tmp_path / "r8.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "best_prec1": torch.tensor(90.0)}, path)
    return path, model


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


FILE_ARGS = ["--model-option", "shortcut_pad=both", "--mean", "0.5", "--std", "0.25"]


def test_eval_of_a_state_dict_file_records_the_file_and_the_normalisation(public_file, capsys):
    path, model = public_file
    code, out, err = _run(["eval", "cifar_resnet8", "--checkpoint", str(path), "--data", "digits", "--json",
                           *FILE_ARGS], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["mean"] == [0.5] and result["std"] == [0.25] and result["normalization"] == "given with --mean/--std"
    assert result["model_options"] == {"shortcut_pad": "both"} and result["weights_file"]["entry"] == "state_dict"
    assert "note: classifier: the source's linear.* is cifar_resnet8's fc.*" in err
    digits = load_dataset("digits")
    with torch.no_grad():
        wrong = (model((digits.test_images.float() / 255 - 0.5) / 0.25).argmax(1) != digits.test_labels).float().mean()
    assert result["error"] == pytest.approx(float(wrong))


def test_predict_export_and_bench_take_a_state_dict_file(public_file, tmp_path, capsys, monkeypatch):
    pytest.importorskip("PIL")
    from PIL import Image

    path, _ = public_file
    monkeypatch.chdir(tmp_path)
    digits = load_dataset("digits")
    Image.fromarray(digits.test_images[0, 0].numpy()).save(tmp_path / "digit.png")
    code, out, err = _run(["predict", "cifar_resnet8", "digit.png", "--checkpoint", str(path), "--data", "digits",
                           "--json", *FILE_ARGS], capsys)
    assert code == 0, err
    assert {entry["class"] for entry in json.loads(out)["top"]} <= set(digits.class_names)
    code, out, err = _run(["predict", "cifar_resnet8", "digit.png", "--checkpoint", str(path)], capsys)
    assert code == 2 and "input normalisation of" in err and err.count("\n") == 1
    code, out, err = _run(["export", "cifar_resnet8", "--checkpoint", str(path), "--format", "torchscript",
                           "--input-size", "8", "--model-option", "shortcut_pad=both"], capsys)
    assert code == 0, err
    assert (tmp_path / "r8.torchscript.pt").is_file() and "(N, 1, 8, 8)" in out
    code, out, err = _run(["bench", "infer", "cifar_resnet8", "--checkpoint", str(path), "--data", "digits", "--paths",
                           "eager", "--min-time", "0.01", "--check-images", "16", "--calibration-images", "4",
                           "-o", "bench.json", *FILE_ARGS], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["mean"] == [0.5] and record["model_options"] == {"shortcut_pad": "both"}


@pytest.mark.parametrize("analysis, extra", [
    ("responses", ["--samples", "32"]),
    ("lesion", ["--samples", "32", "--max-removed", "1"]),
    ("gradients", ["--samples", "32", "--no-classic"]),
    ("landscape", ["--dims", "1", "--grid=-1:1:3", "--samples", "32", "--no-plots"]),
    ("hessian", ["--samples", "32", "--top-k", "1", "--max-iterations", "3", "--no-plots"]),
])
def test_every_analysis_takes_a_state_dict_file_and_records_it(public_file, tmp_path, capsys, analysis, extra):
    path, _ = public_file
    checkpoint = ["--checkpoints", str(path)] if analysis == "gradients" else ["--checkpoint", str(path)]
    code, out, err = _run(["analyze", analysis, "cifar_resnet8", *checkpoint, "--data", "digits", "--out",
                           str(tmp_path / "out"), "--quiet", *FILE_ARGS, *extra], capsys)
    assert code == 0, err
    assert f"reslab analyze {analysis}: weights: {path}" in err
    result = next((tmp_path / "out").glob("*.json"))
    target = json.loads(result.read_text())["target"]
    assert target["mean"] == [0.5] and target["std"] == [0.25] and target["checkpoint"] == str(path)
    assert target["weights_file"]["renamed"] == {"linear": "fc"}
    assert target["model_options"]["shortcut_pad"] == "both"


def test_a_weights_file_given_as_the_run_says_how_to_give_it(public_file, capsys):
    path, _ = public_file
    for argv in (["export", str(path)], ["eval", str(path)], ["analyze", "responses", str(path)]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "--checkpoint" in err, (argv, err)


def test_a_weights_file_with_a_nan_is_refused_naming_the_tensor(public_file, tmp_path, capsys):
    path, model = public_file
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    for argv in (["eval", "cifar_resnet8", "--checkpoint", str(tmp_path / "nan.pth"), "--data", "digits"],
                 ["finetune", str(tmp_path / "nan.pth"), "--model", "cifar_resnet8", "--data", "digits", "--out",
                  str(tmp_path / "ft")]):
        code, out, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "tensor 'layer1.0.conv1.weight' holds 1 non-finite" in err
    assert not (tmp_path / "ft").exists()


def test_a_module_prefix_is_dropped_with_a_note(public_file, capsys):
    path, _ = public_file  # saved with DataParallel's module. prefix
    code, _, err = _run(["eval", "cifar_resnet8", "--checkpoint", str(path), "--data", "digits", *FILE_ARGS], capsys)
    assert code == 0 and "dropped the prefix 'module.' of every tensor" in err


def test_predict_fast_of_a_weights_file_says_there_is_no_record_to_use(public_file, tmp_path, capsys, monkeypatch):
    from PIL import Image

    path, _ = public_file
    monkeypatch.chdir(tmp_path)
    Image.fromarray(load_dataset("digits").test_images[0, 0].numpy()).save(tmp_path / "digit.png")
    code, _, err = _run(["predict", "cifar_resnet8", "digit.png", "--checkpoint", str(path), "--data", "digits",
                         "--fast", *FILE_ARGS], capsys)
    assert code == 0 and "weights outside a run have no record of reslab bench infer" in err
    assert "None" not in err


def test_a_name_that_is_neither_a_run_nor_a_model_says_both(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["eval", "resnt20"], capsys)
    assert code == 2 and "no run directory 'resnt20' here, and it is no model name either" in err
    assert "did you mean resnet20" in err
