"""The HTML report: discovery of sections, fake run/experiment directories, missing and broken files."""

from __future__ import annotations

import base64
import json
import re

import pytest

from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.report import build_report, collect_dirs, discover_sections


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_sections_are_discovered_in_order():
    modules = discover_sections()
    titles = [m.TITLE for m in modules]
    for title in ("Runs", "Training curves", "Degradation", "Gradient flow", "Layer responses", "Lesion study"):
        assert title in titles
    orders = [m.ORDER for m in modules]
    assert orders == sorted(orders)
    assert titles.index("Runs") < titles.index("Degradation") < titles.index("Lesion study")


def test_full_experiment_report_embeds_every_plot(experiment_dir, tmp_path):
    output = tmp_path / "out" / "report.html"
    result = build_report([experiment_dir], output, title="Degradation on digits")
    assert result.warnings == []
    assert result.sections[:6] == ["Runs", "Training curves", "Degradation", "Gradient flow", "Layer responses",
                                   "Lesion study"]
    html = output.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "Degradation on digits" in html and "embedded digits" in html  # title, data source
    pngs = embedded_pngs(html)
    # training curves 1, degradation 2, gradients 3 (flow, classic, shattered), responses 1, lesion 1
    assert len(pngs) >= 8
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    for anchor in ("runs", "training-curves", "degradation", "gradient-flow", "layer-responses", "lesion-study"):
        assert f'href="#{anchor}"' in html and f'id="{anchor}"' in html
    assert "cifar_plain20" in html and "plain14-s0" in html  # runs table
    assert "http://" not in html and "https://" not in html  # nothing fetched when opened offline
    assert not list(output.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_report_of_a_run_without_analysis_files_skips_their_sections(single_run, tmp_path):
    result = build_report([single_run], tmp_path / "r.html")
    assert result.sections == ["Runs", "Training curves"]
    html = (tmp_path / "r.html").read_text()
    assert "Gradient flow" not in html and "Lesion study" not in html
    assert len(embedded_pngs(html)) == 1


def test_analysis_output_directory_alone_makes_a_report(analysis_only_dir, tmp_path):
    result = build_report([analysis_only_dir], tmp_path / "r.html")
    assert result.sections == ["Gradient flow", "Layer responses", "Lesion study"]
    html = (tmp_path / "r.html").read_text()
    assert len(embedded_pngs(html)) == 5
    assert "resnet8, at initialisation" in html and "resnet8 @ last" in html  # headings name model + checkpoint


def test_broken_section_file_gives_a_warning_not_a_crash(analysis_only_dir, tmp_path):
    lesion = analysis_only_dir / "lesion.json"
    lesion.write_text(json.dumps({"analysis": "lesion", "series": [{"blocks": ["a"], "single_block_error": "oops"}]}))
    (analysis_only_dir / "responses.json").write_text("{ not json")
    result = build_report([analysis_only_dir], tmp_path / "r.html")
    assert len(result.warnings) == 1 and "Lesion study" in result.warnings[0]
    html = (tmp_path / "r.html").read_text()
    assert 'class="warning"' in html and "Gradient flow" in html
    assert "Layer responses" not in result.sections  # unreadable JSON: the file counts as absent


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        collect_dirs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a run directory"):
        collect_dirs([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="at least one"):
        collect_dirs([])


def test_output_that_is_a_directory_is_refused(single_run, tmp_path):
    with pytest.raises(ConfigError, match="directory"):
        build_report([single_run], tmp_path)


def test_experiment_and_its_runs_are_not_duplicated(experiment_dir):
    runs, experiments = collect_dirs([experiment_dir, experiment_dir / "resnet8-s0"])
    assert experiments == [experiment_dir]
    assert len(runs) == 6 and runs[0].name == "plain8-s0"  # depth-aware order: 8 before 14


def test_cli_report(single_run, tmp_path, capsys):
    output = tmp_path / "cli.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(single_run), "-o", str(output), "--title", "From the CLI"])
    assert exit_info.value.code == 0
    assert "Training curves" in capsys.readouterr().out
    assert "From the CLI" in output.read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "nope"), "-o", str(output)])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_folder_of_experiments_and_analysis_outputs_is_expanded(experiment_dir, analysis_only_dir, tmp_path):
    # experiment_dir = tmp/degradation, analysis_only_dir = tmp/analysis/resnet8: pass tmp itself.
    runs, experiments = collect_dirs([tmp_path])
    assert experiments == [experiment_dir]
    assert analysis_only_dir in runs and len(runs) == 7


def test_cli_lists_a_section_that_failed_as_skipped_not_as_built(single_run, tmp_path, capsys):
    # Text where numbers belong: the sections drawn from metrics.jsonl cannot be built.
    metrics = single_run / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps({**row, "test_error": "abc"}) + "\n" for row in rows))
    result = build_report([single_run], tmp_path / "r.html")
    assert "Training curves" in result.skipped and "Training curves" not in result.sections
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(single_run), "-o", str(tmp_path / "cli.html")])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    wrote = captured.out.strip().splitlines()[-1]
    built, _, skipped = wrote.partition("; skipped: ")
    assert "Training curves" not in built and "Training curves" in skipped
    assert "section 'Training curves' could not be built" in captured.err


def test_partial_last_metrics_line_is_one_warning_line_in_the_cli(single_run, tmp_path, capsys):
    with (single_run / "metrics.jsonl").open("a") as file:
        file.write('{"epoch": 7, "iter')
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(single_run), "-o", str(tmp_path / "r.html")])
    assert exit_info.value.code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"reslab report: warning: {single_run / 'metrics.jsonl'}: skipped line 7, "
                   "which is still being written or was cut short"]
