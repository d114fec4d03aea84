"""Gradient flow: per-layer norms, the classic no-BN case, shattered gradients, result files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reslab.analysis.common import build_model, fresh_twin, load_target, select_samples
from reslab.analysis.gradients import (
    ClassicMLP,
    GradientFlowResult,
    analyze_gradients,
    classic_vanishing_gradients,
    layer_gradients,
    shattered_gradients,
)
from reslab.cli.main import main
from reslab.errors import AnalysisError
from reslab.models import weight_layers


def test_classic_plain_tanh_first_layer_gradient_is_orders_of_magnitude_below_residual():
    (plain, residual), settings = classic_vanishing_gradients(depth=50, activation="tanh", seed=0)
    assert plain.kind == "plain" and residual.kind == "residual"
    assert len(plain.grad_norm) == len(residual.grad_norm) == settings["weight_layers"] == 52
    assert residual.grad_norm[0] >= 100 * plain.grad_norm[0]
    # The plain net's gradient shrinks towards the input; the residual net's does not.
    assert plain.grad_norm[0] < 1e-3 * plain.grad_norm[-2]
    assert residual.grad_norm[0] > 0.1 * residual.grad_norm[-2]


def test_classic_twins_share_weights_and_differ_only_in_the_shortcut():
    torch.manual_seed(3)
    plain = ClassicMLP(16, 3, depth=4, width=8, residual=False)
    torch.manual_seed(3)
    residual = ClassicMLP(16, 3, depth=4, width=8, residual=True)
    for (_, a), (_, b) in zip(plain.state_dict().items(), residual.state_dict().items()):
        assert torch.equal(a, b)
    x = torch.randn(5, 16)
    assert not torch.allclose(plain(x), residual(x))


def test_layer_gradients_match_autograd_and_do_not_depend_on_batching():
    torch.manual_seed(0)
    model = ClassicMLP(12, 3, depth=3, width=6, activation="tanh")
    x, y = torch.randn(10, 12), torch.randint(0, 3, (10,))
    whole = layer_gradients(model, x, y, batch_size=10)
    split = layer_gradients(model, x, y, batch_size=3)
    np.testing.assert_allclose(whole.grad_norm, split.grad_norm, rtol=1e-5)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    weights = [model.input.weight, *[h.weight for h in model.hidden], model.fc.weight]
    expected = [float(g.norm()) for g in torch.autograd.grad(loss, weights)]
    np.testing.assert_allclose(whole.grad_norm, expected, rtol=1e-5)
    assert whole.loss == pytest.approx(float(loss.detach()), rel=1e-5)


def test_layer_gradients_of_a_resnet_cover_every_weight_layer_and_leave_the_model_untouched(dataset):
    model = build_model("cifar_resnet8", dataset, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = select_samples(dataset, "train", 16)
    result = layer_gradients(model, x, y, lr=0.1, batch_size=8)
    assert result.layers == [name for name, _ in weight_layers(model)] and len(result.layers) == 8
    assert all(np.isfinite(result.grad_norm)) and min(result.grad_norm) > 0
    np.testing.assert_allclose(result.update_ratio,
                               [0.1 * g / w for g, w in zip(result.grad_norm, result.weight_norm)])
    assert not model.training
    for key, value in model.state_dict().items():  # BN running stats restored
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_gives_the_same_gradients(dataset):
    x, y = select_samples(dataset, "train", 16, seed=1)
    runs = [layer_gradients(build_model("cifar_plain8", dataset, seed=5), x, y).grad_norm for _ in range(2)]
    assert runs[0] == runs[1]


def test_shattered_gradients_correlation_starts_at_one_and_stays_bounded(dataset):
    model = build_model("cifar_resnet8", dataset, seed=0)
    x, _ = select_samples(dataset, "test", 2)
    result = shattered_gradients(model, x[0], x[1], steps=9)
    assert result.lags == list(range(5)) and result.distance[-1] == pytest.approx(0.5)  # up to half the line
    assert shattered_gradients(model, x[0], x[1], steps=9, max_lag=8).distance[-1] == pytest.approx(1.0)
    assert result.correlation[0] == pytest.approx(1.0)
    assert all(-1.0 - 1e-9 <= c <= 1.0 + 1e-9 for c in result.correlation)
    assert result.matrix.shape == (9, 9)
    np.testing.assert_allclose(result.matrix, result.matrix.T, atol=1e-6)


def test_result_round_trips_through_json_and_npz(tmp_path, dataset):
    target = load_target("cifar_resnet8", dataset=dataset)
    twin = fresh_twin(target)
    x, y = select_samples(dataset, "train", 16)
    xt, _ = select_samples(dataset, "test", 2)
    result = analyze_gradients([(target, None), (twin, 0.1)], x, y, describe=target.describe(), classic_depth=4,
                               shattered=[target], line=(xt[0], xt[1]), shattered_steps=5)
    path = result.save(tmp_path)
    assert path == tmp_path / "gradients.json" and (tmp_path / "gradients.npz").is_file()
    data = json.loads(path.read_text())
    assert data["analysis"] == "gradients" and data["versions"]["torch"] == torch.__version__
    assert data["shattered"][0]["matrix"] == {"__array__": "shattered_0_matrix"}
    loaded = GradientFlowResult.load(path)
    assert [s.label for s in loaded.series] == ["cifar_resnet8 @ init", "cifar_plain8 @ init"]
    assert loaded.series[1].lr == 0.1 and loaded.series[0].grad_norm == result.series[0].grad_norm
    np.testing.assert_array_equal(loaded.shattered[0].matrix, result.shattered[0].matrix)
    assert [s.kind for s in loaded.classic] == ["plain", "residual"]


def test_model_name_without_data_is_a_clear_error():
    with pytest.raises(AnalysisError, match="--data"):
        load_target("cifar_resnet8")


def test_cli_gradients_of_a_model_name_writes_json_and_pngs(tmp_path, capsys):
    out = tmp_path / "out"
    main_args = ["analyze", "gradients", "cifar_resnet8", "--data", "synthetic", "--data-option", "num_train=32",
                 "--data-option", "num_test=16", "--data-option", "image_size=8", "--samples", "16", "--twin",
                 "--classic-depth", "20", "--shattered", "--shattered-steps", "6", "--out", str(out), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(main_args)
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "cifar_plain8 @ init" in printed and "wrote" in printed
    for name in ("gradients.json", "gradients.npz", "gradients.png", "gradients_classic.png", "gradients_shattered.png"):
        assert (out / name).is_file(), name
    assert (out / "gradients.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "gradients.json").read_text())
    assert [s["kind"] for s in data["series"]] == ["residual", "plain"]
    plain, residual = data["classic"]
    assert residual["grad_norm"][0] >= 100 * plain["grad_norm"][0]


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "gradients", "cifar_resnet8", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "needs data" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "gradients", "cifar_resnet8", "--data", "digits", "--checkpoints", "last"])
    assert exit_info.value.code == 2
    assert "no checkpoints" in capsys.readouterr().err
