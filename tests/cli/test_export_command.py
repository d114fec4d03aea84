"""``reslab export``: every format written, run the way a deployment would, and checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from reslab.cli.main import main
from reslab.models.export import ExportCheck, run_exported

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("fmt, suffix, runner", [("onnx", ".onnx", "ONNX Runtime"),
                                                  ("torchscript", ".torchscript.pt", "torch.jit.load"),
                                                  ("exported-program", ".pt2", "torch.export.load")])
def test_export_writes_checks_and_prints_the_check(tmp_path, capsys, fmt, suffix, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["export", "cifar_resnet8", "--format", fmt, "--num-classes", "4", "--in-chans", "1",
                           "--input-size", "8"], capsys)
    assert code == 0, err
    path = tmp_path / f"cifar_resnet8{suffix}"
    assert path.is_file() and f"wrote {path.name}" in out
    assert f"check: {runner} vs PyTorch on a batch of 3: max |difference|" in out and out.rstrip().endswith("OK")
    import torch

    assert run_exported(path, fmt, torch.zeros(5, 1, 8, 8)).shape == (5, 4)  # the batch size is free


def test_export_of_the_shipped_weights_and_a_failed_check(tmp_path, capsys, monkeypatch):
    code, out, _ = _run(["export", "resnet20", "--pretrained", "cifar10", "-o", str(tmp_path / "r20.onnx")], capsys)
    assert code == 0 and "pretrained='cifar10'" in out and "(N, 3, 32, 32)" in out
    monkeypatch.setattr("reslab.cli.export.check_export", lambda *a, **k: ExportCheck(0.5, 2.0))
    code, out, err = _run(["export", "resnet20", "-o", str(tmp_path / "bad.onnx")], capsys)
    assert code == 1 and "FAILED" in out and "differs from the model by 5.00e-01 > 0.0001 x 2" in err


def test_export_check_is_relative_to_large_outputs(tmp_path, capsys, monkeypatch):
    # a U-Net's logits reach 43: 1.39e-4 of float32 rounding is 3.2e-6 of them, a valid export
    monkeypatch.setattr("reslab.cli.export.check_export", lambda *a, **k: ExportCheck(1.39e-4, 43.0))
    code, out, err = _run(["export", "cifar_resnet8", "-o", str(tmp_path / "big.onnx")], capsys)
    assert code == 0, err
    assert "max |difference| 1.39e-04, relative 3.2e-06 (largest |output| 43; passes up to 0.0001 x max(1, 43)) OK" in out
    monkeypatch.setattr("reslab.cli.export.check_export", lambda *a, **k: ExportCheck(1.39e-4, 0.5))
    code, out, _ = _run(["export", "cifar_resnet8", "-o", str(tmp_path / "small.onnx")], capsys)
    assert code == 1 and "relative 1.4e-04" in out and out.rstrip().endswith("FAILED")  # absolute below 1


def test_export_of_a_cifar_unet_traces_at_32_and_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["export", "unet_cifar_resnet8", "--num-classes", "3"], capsys)
    assert code == 0, err
    assert "(N, 3, 32, 32)" in out and out.rstrip().endswith("OK")


def _no_export(*args, **kwargs):
    raise AssertionError("the export ran before its output was checked")


@pytest.mark.parametrize("output, message", [
    ("some_dir/", "names a directory; give a file name, such as"),
    ("some_dir", "names a directory"),
    ("a_file/x.onnx", "is a file, not a directory"),
    ("/proc/nope/x.onnx", "nothing can be written in /proc"),
])
def test_export_output_path_is_refused_in_one_line_before_the_export(tmp_path, capsys, monkeypatch, output, message):
    if output.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "some_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr("reslab.cli.export.export_model", _no_export)
    code, out, err = _run(["export", "cifar_resnet8", "-o", output], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith(f"reslab export: error: -o {output}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "some_dir"] and not any((tmp_path / "some_dir").iterdir())


def test_export_refuses_an_existing_file_unless_force(tmp_path, capsys):
    precious = tmp_path / "precious.onnx"
    precious.write_bytes(b"keep me")
    code, _, err = _run(["export", "cifar_resnet8", "-o", str(precious)], capsys)
    assert code == 2 and "the file exists; pass --force to replace it" in err and precious.read_bytes() == b"keep me"
    code, out, err = _run(["export", "cifar_resnet8", "-o", str(precious), "--force", "--no-check"], capsys)
    assert code == 0, err
    assert precious.read_bytes() != b"keep me" and run_exported(precious, "onnx", _zeros()).shape == (1, 10)


def _zeros():
    import torch

    return torch.zeros(1, 3, 32, 32)


@pytest.mark.parametrize("fmt, name, message", [
    ("torchscript", "model.onnx", "the suffix .onnx says an ONNX file, but --format is torchscript; name the file "
                                  "model.torchscript.pt, or pass --format onnx"),
    ("onnx", "model.pt", "the suffix .pt says a TorchScript file, but --format is onnx; name the file model.onnx"),
    ("onnx", "model.pt2", "says an ExportedProgram file"),
    ("exported-program", "x.pt", "must end in .pt2"),
])
def test_export_refuses_a_suffix_that_contradicts_the_format(tmp_path, capsys, monkeypatch, fmt, name, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("reslab.cli.export.export_model", _no_export)
    code, _, err = _run(["export", "cifar_resnet8", "--format", fmt, "-o", name], capsys)
    assert code == 2 and message in err and not any(tmp_path.iterdir()), err


@pytest.mark.parametrize("flags, message", [
    (["--pretrained", "cifar10"], "--pretrained is for a model name; "),
    (["--num-classes", "3", "--in-chans", "1"], "--num-classes and --in-chans are for a model name"),
    (["--input-size", "0"], "--input-size must be at least 1, got 0"),
])
def test_export_refuses_flags_it_would_ignore(tmp_path, capsys, monkeypatch, flags, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # refused before the run is read
    monkeypatch.setattr("reslab.cli.export.export_model", _no_export)
    code, _, err = _run(["export", str(run_dir), *flags], capsys)
    assert code == 2 and message in err, err


def test_export_of_a_missing_path_says_so(tmp_path, capsys):
    code, _, err = _run(["export", str(tmp_path / "runs" / "missing")], capsys)
    assert code == 2 and "no such run directory or checkpoint file" in err


def test_an_input_size_the_model_refuses_is_one_line_before_any_export(tmp_path, capsys):
    """A U-Net pools by 4: 30x30 is its own one-line error, not an exporter's page-long traceback."""
    for fmt, name in (("onnx", "u.onnx"), ("torchscript", "u.torchscript.pt")):
        code, out, err = _run(["export", "unet_resnet20", "--format", fmt, "--input-size", "30",
                               "-o", str(tmp_path / name)], capsys)
        assert code == 2 and err.count("\n") == 1 and "input 30×30 does not fit" in err, err
        assert not (tmp_path / name).exists()
