"""``reslab export``: every format written, run the way a deployment would, and checked."""

from __future__ import annotations

import pytest

from reslab.cli.main import main
from reslab.models.export import run_exported

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
    monkeypatch.setattr("reslab.cli.export.check_export", lambda *a, **k: 0.5)
    code, out, err = _run(["export", "resnet20", "-o", str(tmp_path / "bad.onnx")], capsys)
    assert code == 1 and "FAILED" in out and "differs from the model by 5.00e-01" in err


def test_export_refuses_a_bad_program_name(tmp_path, capsys):
    code, _, err = _run(["export", "cifar_resnet8", "--format", "exported-program", "-o", str(tmp_path / "x.pt")],
                        capsys)
    assert code == 2 and "must end in .pt2" in err


def test_export_of_a_missing_path_says_so(tmp_path, capsys):
    code, _, err = _run(["export", str(tmp_path / "runs" / "missing")], capsys)
    assert code == 2 and "no such run directory or checkpoint file" in err
