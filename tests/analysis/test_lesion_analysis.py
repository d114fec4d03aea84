"""Lesion study: removing blocks at test time, plain vs residual, random sets of k blocks, CLI."""

from __future__ import annotations

import math

import pytest
import torch

from reslab.analysis.common import build_model, select_samples
from reslab.analysis.lesion import LesionResult, error_rate, lesion_study
from reslab.cli.main import main
from reslab.errors import AnalysisError
from reslab.models import named_blocks


def test_removing_zeroed_branches_leaves_the_residual_net_unchanged(dataset):
    model = build_model("cifar_resnet14", dataset, seed=0, zero_init_last=True)
    x, y = select_samples(dataset, "test")
    result = lesion_study(model, x, y, draws=3)
    assert result.removable == result.blocks and len(result.blocks) == 6
    assert result.single_block_error == [result.base_error] * 6
    assert result.k == list(range(1, 7))
    assert result.k_mean_error == pytest.approx([result.base_error] * 6)
    assert result.k_std_error == pytest.approx([0.0] * 6, abs=1e-12)
    # Not only the error: the logits themselves are unchanged when any zeroed branch is removed.
    from reslab.models import blocks_removed

    model.eval()
    with torch.no_grad():
        base = model(x)
        for name in result.removable:
            with blocks_removed(model, [name]):
                torch.testing.assert_close(model(x), base)


def test_plain_net_removes_only_shape_keeping_blocks(dataset):
    model = build_model("cifar_plain14", dataset, seed=0)
    x, y = select_samples(dataset, "test")
    result = lesion_study(model, x, y, max_removed=2, draws=2)
    assert result.kind == "plain"
    # layer2.0 and layer3.0 change the shape (stride 2, more channels): they cannot be removed.
    assert result.removable == ["layer1.0", "layer1.1", "layer2.1", "layer3.1"]
    missing = [name for name, err in zip(result.blocks, result.single_block_error) if err is None]
    assert missing == ["layer2.0", "layer3.0"]
    assert result.k == [1, 2] and result.k_sets == [4, 2]  # k = 1 is exact: every removable block once


def test_k_curve_uses_every_set_when_there_are_few_and_matches_removing_all(dataset):
    model = build_model("cifar_resnet8", dataset, seed=2)
    x, y = select_samples(dataset, "test")
    result = lesion_study(model, x, y, draws=10)
    assert result.k_sets == [3, 3, 1]  # C(3,1), C(3,2), C(3,3) ≤ 10 draws: every set once
    assert result.k_mean_error[0] == pytest.approx(sum(result.single_block_error) / 3)
    from reslab.models import blocks_removed

    with blocks_removed(model, result.removable):
        everything = error_rate(model.eval(), x, y)
    assert result.k_mean_error[-1] == pytest.approx(everything)
    assert all(block.branch_enabled for _, block in named_blocks(model))


def test_error_rate_counts_wrong_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = torch.tensor([0, 1, 2, 1], dtype=torch.float32).view(4, 1, 1, 1)
    assert error_rate(Fixed(), x, torch.tensor([0, 1, 1, 2]), batch_size=3) == 0.5


def test_random_sets_are_seeded(dataset):
    model = build_model("cifar_resnet20", dataset, seed=0)
    x, y = select_samples(dataset, "test", 16)
    a = lesion_study(model, x, y, max_removed=3, draws=2, seed=7)
    b = lesion_study(model, x, y, max_removed=3, draws=2, seed=7)
    assert a.k_mean_error == b.k_mean_error and a.k_sets == [9, 2, 2]  # k = 1: all 9 blocks, exactly


def test_bad_max_removed_is_a_clear_error(dataset):
    model = build_model("cifar_resnet8", dataset, seed=0)
    x, y = select_samples(dataset, "test", 8)
    with pytest.raises(AnalysisError, match="--max-removed"):
        lesion_study(model, x, y, max_removed=4)


def test_cli_lesion_with_twin(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "lesion", "cifar_resnet14", "--data", "digits", "--twin", "--samples", "60",
              "--max-removed", "3", "--draws", "2", "--out", str(out), "--quiet"])
    assert exit_info.value.code == 0
    assert "cifar_plain14" in capsys.readouterr().out
    loaded = LesionResult.load(out / "lesion.json")
    residual, plain = loaded.series
    assert residual.kind == "residual" and plain.kind == "plain"
    assert residual.k == [1, 2, 3] and plain.k == [1, 2, 3]
    assert sum(e is None for e in plain.single_block_error) == 2
    assert all(0.0 <= e <= 1.0 for e in residual.single_block_error)
    assert not math.isnan(residual.base_error)
    assert (out / "lesion.png").read_bytes()[:4] == b"\x89PNG"


def test_one_block_removed_is_the_exact_mean_of_the_single_block_errors(dataset):
    model = build_model("cifar_resnet20", dataset, seed=0)
    x, y = select_samples(dataset, "test", 16)
    result = lesion_study(model, x, y, max_removed=2, draws=3, seed=1)  # fewer draws than the 9 blocks
    singles = [e for e in result.single_block_error if e is not None]
    assert result.k_mean_error[0] == pytest.approx(sum(singles) / len(singles))
    assert result.k_sets[0] == len(result.removable) == 9
