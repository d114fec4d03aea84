"""Layer responses: std of each block's branch output F(x), hooks, zeroed branches, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reslab.analysis.common import build_model, select_samples
from reslab.analysis.responses import ResponsesResult, block_responses
from reslab.cli.main import main
from reslab.models import named_blocks


def test_responses_of_zeroed_branches_are_zero(dataset):
    model = build_model("cifar_resnet8", dataset, seed=0, zero_init_last=True)
    x, _ = select_samples(dataset, "test", 16)
    result = block_responses(model, x)
    assert result.blocks == [name for name, _ in named_blocks(model)]
    assert result.std == [0.0] * 3


def test_responses_equal_a_direct_measurement_and_do_not_depend_on_batching(dataset):
    model = build_model("cifar_plain14", dataset, seed=1)
    x, _ = select_samples(dataset, "test", 24)
    seen = {}
    handles = [block.branch_output.register_forward_hook(lambda _m, _i, out, n=name: seen.__setitem__(n, out))
               for name, block in named_blocks(model)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    expected = [float(seen[name].double().std(dim=(0, 2, 3), unbiased=False).mean()) for name, _ in named_blocks(model)]
    small = block_responses(model, x, batch_size=5)
    whole = block_responses(model, x, batch_size=64)
    np.testing.assert_allclose(whole.std, expected, rtol=1e-6)
    np.testing.assert_allclose(small.std, whole.std, rtol=1e-6)
    assert small.sorted_std == sorted(small.std, reverse=True)
    assert small.kind == "plain" and min(small.std) > 0


def test_hooks_are_removed_and_mode_is_restored(dataset):
    model = build_model("cifar_resnet8", dataset, seed=0).train()
    x, _ = select_samples(dataset, "test", 4)
    block_responses(model, x)
    assert model.training
    assert all(not block.branch_output._forward_hooks for _, block in named_blocks(model))


def test_cli_responses_with_twin_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "responses", "cifar_resnet8", "--data", "digits", "--twin", "--samples", "50",
              "--out", str(out)])
    assert exit_info.value.code == 0
    assert "cifar_plain8" in capsys.readouterr().out
    assert (out / "responses.png").read_bytes()[:4] == b"\x89PNG"
    loaded = ResponsesResult.load(out)
    assert [s.kind for s in loaded.series] == ["residual", "plain"]
    assert loaded.settings["samples"] == 50 and len(loaded.series[0].std) == 3
    assert json.loads((out / "responses.json").read_text())["target"]["dataset"] == "digits"


def test_cli_model_option_zero_init_last_gives_zero_responses(tmp_path):
    out = tmp_path / "zeroed"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "responses", "cifar_resnet8", "--data", "digits", "--model-option", "zero_init_last=true",
              "--samples", "20", "--out", str(out), "--quiet"])
    assert exit_info.value.code == 0
    assert ResponsesResult.load(out).series[0].std == [0.0, 0.0, 0.0]


def test_a_twin_of_another_depth_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "responses", "cifar_resnet8", "--data", "digits", "--twin", "cifar_plain14",
              "--samples", "8", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "--twin cifar_plain14 has 6 blocks and cifar_resnet8 3" in err[0] and "--twin cifar_plain8" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_missing_run_directory_is_said_to_not_exist(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "responses", str(tmp_path / "no-such-run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "no-such-run does not exist" in err and "config.json" not in err
