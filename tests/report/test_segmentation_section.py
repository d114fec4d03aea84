"""The report's "Segmentation" section, from hand-written segmentation run directories."""

from __future__ import annotations

import json
from pathlib import Path

from reslab.report import build_report
from reslab.report.sections import segmentation


def make_segment_run(run_dir: Path, model: str, kind: str, final_miou: float, epochs: int = 3) -> Path:
    run_dir.mkdir(parents=True)
    config = {"task": "segment", "model": model, "model_options": {}, "data": "shapes", "data_options": {},
              "seed": 0, "epochs": epochs, "batch_size": 8, "optimizer": "adam", "lr": 0.001,
              "encoder": model.removeprefix("unet_"), "encoder_kind": kind,
              "class_names": ["background", "rectangle", "ellipse", "triangle"], "data_source": "generated"}
    (run_dir / "config.json").write_text(json.dumps(config))
    rows = []
    for epoch in range(1, epochs + 1):
        miou = final_miou * epoch / epochs
        rows.append({"epoch": epoch, "iteration": 64 * epoch, "lr": 0.001, "train_loss": 1 / epoch,
                     "train_error": 0.2 / epoch, "train_pixel_accuracy": 1 - 0.2 / epoch, "test_loss": 1.1 / epoch,
                     "test_error": 0.15 / epoch, "test_pixel_accuracy": 1 - 0.15 / epoch, "test_miou": miou,
                     "test_iou": [0.9, miou, miou, miou], "elapsed_s": 10.0 * epoch})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def test_residual_and_plain_runs_side_by_side(tmp_path):
    residual = make_segment_run(tmp_path / "unet_resnet18", "unet_resnet18", "residual", 0.61)
    plain = make_segment_run(tmp_path / "unet_plain18", "unet_plain18", "plain", 0.48)
    html = segmentation.build([residual, plain], [])
    assert "Residual vs plain encoder" in html and "+13.0 points" in html
    assert "61.0%" in html and "48.0%" in html and "<img" in html
    assert "IoU per class after the last epoch: background 90.0%, rectangle 61.0%" in html

    result = build_report([residual, plain], tmp_path / "report.html")
    assert "Segmentation" in result.sections and "Runs" in result.sections and not result.warnings


def test_no_section_without_segmentation_runs(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "resnet20", "data": "digits"}))
    assert segmentation.build([run], []) is None
