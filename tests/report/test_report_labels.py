"""Outputs say what they are: smoothed training loss, short training times."""

from __future__ import annotations

from reslab.report.plots import plot_training_curves
from reslab.report.sections.runs import _duration

ROWS = [{"epoch": 1, "train_error": 0.5, "test_error": 0.4, "train_loss": 1.2, "test_loss": 1.0},
        {"epoch": 2, "train_error": 0.3, "test_error": 0.3, "train_loss": 0.9, "test_loss": 0.8}]


def test_the_loss_panel_says_when_the_training_loss_is_smoothed():
    figure = plot_training_curves([("smooth", ROWS), ("plain", ROWS)], label_smoothing={"smooth": 0.1})
    titles = [ax.get_title() for ax in figure.axes]
    assert "smooth: loss (train: label smoothing 0.1)" in titles and "plain: loss" in titles


def test_short_runs_are_timed_in_seconds_not_zero_minutes():
    assert _duration(2.34) == "2.3 s" and _duration(42) == "42 s"
    assert _duration(600) == "10.0 min" and _duration(9000) == "2.5 h" and _duration(None) == "–"


def test_a_run_whose_config_is_damaged_is_listed_with_the_reason(tmp_path, capsys):
    import json

    from reslab.report import build_report

    for name in ("good", "broken"):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"model": "resnet20", "seed": 0, "data": "digits"}))
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "runs" / "broken" / "config.json").write_text("{oops")
    out = tmp_path / "report.html"
    build_report([tmp_path / "runs"], out)
    html = out.read_text()
    assert "1 run(s) could not be read" in html and "broken: run config" in html and "is corrupt" in html
    assert capsys.readouterr().err.count("broken/config.json") == 1
