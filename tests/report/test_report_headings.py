"""Section headings name what was analysed: the run, the model and every checkpoint."""

from pathlib import Path

from reslab.report.sections._common import result_heading


def test_heading_lists_every_checkpoint_of_a_multi_checkpoint_analysis():
    data = {"target": {"label": "resnet20", "checkpoint": "init", "checkpoints": ["init", "last"], "run_dir": "r"}}
    assert result_heading(Path("runs/resnet20-s0"), data) == "resnet20-s0 (resnet20) @ init, last"


def test_heading_of_a_single_initialisation_says_so():
    data = {"target": {"label": "resnet20", "checkpoint": "init", "run_dir": "r"}}
    assert result_heading(Path("runs/resnet20-s0"), data) == "resnet20-s0 (resnet20), at initialisation"


def test_heading_of_a_fresh_model_is_its_name():
    data = {"target": {"label": "plain56", "checkpoint": None, "run_dir": None}}
    assert result_heading(Path("analysis/plain56"), data) == "plain56"
