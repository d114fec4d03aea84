"""Landscape evaluation: exactness (origin, interpolation ends, methods agree), resuming, files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reslab.analysis.common import Target
from reslab.errors import AnalysisError
from reslab.analysis.landscape import (
    LandscapeEvaluator,
    LandscapeResult,
    analyze_landscape,
    compute_landscape,
    interpolation_line,
    model_state,
    parse_grid,
    random_plane,
)
from reslab.analysis.landscape.surface import grid_points
from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.models import create_model


def tiny_model(seed: int = 0, name: str = "cifar_resnet8", classes: int = 4):
    """A tiny ResNet whose BN layers hold non-trivial statistics (so eval-mode BN matters)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=classes, in_chans=1).eval()
    generator = torch.Generator().manual_seed(seed + 100)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.1, generator=generator)
    return model


def tiny_data(n: int = 40, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.randint(0, 4, (n,), generator=generator)


def reference_loss(model, state, x, y) -> tuple[float, float]:
    """Point-by-point, the obvious way: load the weights, run the model, average the loss."""
    import copy

    net = copy.deepcopy(model)
    net.load_state_dict({**net.state_dict(), **state})
    with torch.no_grad():
        logits = net.eval()(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def test_surface_value_at_the_origin_is_the_models_loss():
    model, (x, y) = tiny_model(), tiny_data()
    plane = random_plane(model, dims=2, seed=0)
    result = compute_landscape(model, plane, x, y, x=np.linspace(-1, 1, 3), y=np.linspace(-1, 1, 3), batch_size=16)
    with torch.no_grad():
        logits = model(x)
    expected = float(F.cross_entropy(logits, y))
    assert result.origin_loss == pytest.approx(expected, rel=1e-5)
    assert result.loss[1, 1] == pytest.approx(expected, rel=1e-5)  # (0, 0) is also a grid point
    assert result.origin_accuracy == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert result.loss.shape == (3, 3) and np.isfinite(result.loss).all() and result.complete


@pytest.mark.parametrize("keep_bn_bias", [False, True])
def test_every_method_equals_point_by_point_evaluation(keep_bn_bias):
    model, (x, y) = tiny_model(), tiny_data()
    plane = random_plane(model, dims=2, seed=2, keep_bn_bias=keep_bn_bias)
    coords = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.7, 0.9], [1.0, 1.0], [0.05, 0.5]], dtype=torch.float64)
    expected = torch.tensor([reference_loss(model, plane.point(c.tolist()), x, y)[0] for c in coords],
                            dtype=torch.float64)
    variants = {
        "loop": LandscapeEvaluator(model, x, y, batch_size=16),
        "loop, unfolded NCHW": LandscapeEvaluator(model, x, y, batch_size=7, fold_bn=False, channels_last=False),
        "loop, 2 workers": LandscapeEvaluator(model, x, y, batch_size=16, workers=2),
        "vmap": LandscapeEvaluator(model, x, y, batch_size=16, method="vmap", chunk_size=2),
    }
    assert variants["loop"].bn_folded > 0 and variants["loop, unfolded NCHW"].bn_folded == 0
    assert variants["loop"].pointwise_fused > 0  # conv + ReLU (+ add) in one oneDNN call on the CPU
    for name, evaluator in variants.items():
        loss, accuracy = evaluator.evaluate(plane, coords)
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5, msg=name)
        assert loss.dtype == torch.float64 and accuracy.shape == (5,)


@pytest.mark.parametrize("name", ["cifar_plain8", "cifar_preact_resnet8", "highway20"])
def test_folding_and_fusing_are_exact_across_block_kinds(name):
    model, (x, y) = tiny_model(name=name), tiny_data(12)
    plane = random_plane(model, dims=2, seed=1, keep_bn_bias=True)
    evaluator = LandscapeEvaluator(model, x, y, workers=1)
    assert evaluator.bn_folded > 0 and evaluator.pointwise_fused > 0
    coords = [[0.0, 0.0], [0.4, -0.3]]
    loss, accuracy = evaluator.evaluate(plane, coords)
    for i, c in enumerate(coords):
        expected_loss, expected_accuracy = reference_loss(model, plane.point(c), x, y)
        assert float(loss[i]) == pytest.approx(expected_loss, rel=1e-4)
        assert float(accuracy[i]) == pytest.approx(expected_accuracy)


def test_reduced_precision_is_close_and_changes_the_fingerprint(tmp_path):
    model, (x, y) = tiny_model(), tiny_data(16)
    plane = random_plane(model, dims=1, seed=0)
    axis = np.linspace(-0.5, 0.5, 3)
    exact = compute_landscape(model, plane, x, y, x=axis)
    low = compute_landscape(model, plane, x, y, x=axis, precision="bf16")
    np.testing.assert_allclose(low.loss, exact.loss, rtol=0.1)
    assert low.settings["precision"] == "bf16" and low.fingerprint != exact.fingerprint


def test_interpolation_end_points_equal_the_two_checkpoints_losses():
    x, y = tiny_data()
    first, second = tiny_model(0), tiny_model(1)
    line = interpolation_line(model_state(first), model_state(second), "first", "second")
    result = compute_landscape(first, line, x, y, x=np.linspace(-0.5, 1.5, 5))  # includes 0 and 1
    assert result.dims == 1 and result.loss.shape == (5,)
    assert result.loss[1] == pytest.approx(reference_loss(first, model_state(first), x, y)[0], rel=1e-5)
    assert result.loss[3] == pytest.approx(reference_loss(second, model_state(second), x, y)[0], rel=1e-5)
    assert result.plane["from"] == "first" and result.plane["to"] == "second"


def test_a_resumed_grid_equals_an_uninterrupted_one(tmp_path):
    model, (x, y) = tiny_model(), tiny_data(24)
    plane = random_plane(model, dims=2, seed=4)
    axis = np.linspace(-1, 1, 4)
    whole = compute_landscape(model, plane, x, y, x=axis, y=axis, out=tmp_path / "whole.npz")
    out = tmp_path / "parts.npz"
    first = compute_landscape(model, plane, x, y, x=axis, y=axis, out=out, max_points=6)
    assert not first.complete and int(np.isnan(first.loss).sum()) == 10
    assert (tmp_path / "parts.partial.npz").is_file()
    assert LandscapeResult.load(out).complete is False

    calls = []

    def interrupt(progress):  # a Ctrl-C after the next chunk: what was done must be kept
        calls.append(int(progress.done.sum()))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_landscape(model, plane, x, y, x=axis, y=axis, out=out, on_chunk=interrupt)
    with np.load(tmp_path / "parts.partial.npz") as partial:
        assert int(partial["done"].sum()) == calls[0] > 6
    last = compute_landscape(model, plane, x, y, x=axis, y=axis, out=out)
    assert last.complete and last.settings["points_evaluated_now"] == 17 - calls[0]
    np.testing.assert_allclose(last.loss, whole.loss, rtol=1e-6)
    np.testing.assert_allclose(last.accuracy, whole.accuracy)
    assert last.origin_loss == pytest.approx(whole.origin_loss)
    assert not (tmp_path / "parts.partial.npz").exists()  # cleaned up once complete
    # Other arguments make a different computation: it does not silently replace the complete
    # landscape there, and with force=True a stale partial file is not reused.
    with pytest.raises(AnalysisError, match="holds a complete landscape of another computation.*--force"):
        compute_landscape(model, plane, x, y, x=axis, y=axis + 0.5, out=out, max_points=3)
    other = compute_landscape(model, plane, x, y, x=axis, y=axis + 0.5, out=out, max_points=3, force=True)
    assert int(np.isfinite(other.loss).sum()) == 3


def test_saved_landscape_round_trips_and_its_sidecar_is_a_result_file(tmp_path):
    from reslab.report.files import load_result

    model, (x, y) = tiny_model(), tiny_data(16)
    plane = random_plane(model, dims=1, seed=0)
    result = compute_landscape(model, plane, x, y, x=np.linspace(-1, 1, 5), out=tmp_path / "l.npz",
                               target={"label": "tiny", "kind": "residual"})
    loaded = LandscapeResult.load(tmp_path / "l.npz")
    assert loaded.dims == 1 and loaded.y is None and loaded.target["label"] == "tiny"
    np.testing.assert_array_equal(loaded.loss, result.loss)
    assert loaded.plane["seeds"] == [0] and loaded.directions_file == "l.directions.safetensors"
    assert (tmp_path / "l.directions.safetensors").is_file()
    sidecar = load_result(tmp_path / "l.json")
    assert sidecar["analysis"] == "landscape" and np.array_equal(sidecar["loss"], result.loss)
    assert json.loads((tmp_path / "l.json").read_text())["settings"]["bn_mode"] == "eval"


def test_grid_points_and_parsing():
    points = grid_points(np.array([0.0, 1.0, 2.0]), np.array([-1.0, 1.0]))
    assert points.tolist() == [[0, -1], [1, -1], [2, -1], [0, 1], [1, 1], [2, 1]]  # loss[j, i] row-major
    assert parse_grid("-1:1:51") == (-1.0, 1.0, 51) and parse_grid("7") == (None, None, 7)
    for bad in ("1:0:5", "a:b:c", "0:1", "0:1:0"):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_analyze_landscape_of_a_target_uses_its_data_and_names_the_file(tmp_path, dataset):
    model = create_model("cifar_resnet8", num_classes=dataset.num_classes, in_chans=dataset.in_chans).eval()
    target = Target(model=model, dataset=dataset, label="cifar_resnet8")
    result = analyze_landscape(target, grid="3", samples=20, out=tmp_path, dims=1)
    assert result.path == str(tmp_path / "landscape_random_1d.npz")
    assert result.settings["samples"] == 20 and result.settings["dataset"] == "tiny"
    np.testing.assert_allclose(result.x, [-1, 0, 1])


# -- runs: PCA planes, interpolation, CLI -----------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 3-epoch run of a tiny ResNet on synthetic data, saving every epoch (a trajectory)."""
    from reslab.train import resolve_config, train

    root = tmp_path_factory.mktemp("landscape_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = resolve_config("digits-quick", model="cifar_resnet8", overrides={
            "out": str(root / "cifar_resnet8"), "epochs": 3, "batch_size": 32, "data": "synthetic", "save_every": 1,
            "data_options": {"num_train": 64, "num_test": 32, "image_size": 8, "channels": 1, "num_classes": 4},
            "quiet": True, "seed": 1})
        train(config)
    finally:
        torch.set_num_threads(threads)
    return root / "cifar_resnet8"


def _cli(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "landscape", *argv, "--quiet"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return captured.out


def test_cli_pca_plane_of_a_run_with_trajectory_and_report(run_dir, capsys):
    _cli([str(run_dir), "--plane", "pca", "--grid", "4", "--samples", "16"], capsys)
    analysis = run_dir / "analysis"
    data = LandscapeResult.load(analysis / "landscape_pca.npz")
    assert data.trajectory.shape == (5, 2)  # init, epoch_1..3, and the final point (last) at the origin
    assert data.plane["trajectory_labels"] == ["init", "epoch_1", "epoch_2", "epoch_3", "last"]
    assert 0.5 < sum(data.plane["explained_variance_ratio"]) <= 1.0 + 1e-9
    # The default grid covers the whole trajectory.
    assert data.x.min() < data.trajectory[:, 0].min() and data.x.max() > data.trajectory[:, 0].max()
    for suffix in ("_contour", "_contourf", "_surface", "_trajectory"):
        assert (analysis / f"landscape_pca{suffix}.png").is_file()


def test_cli_interpolation_from_init_to_last_and_a_checkpoint_file_target(run_dir, capsys):
    from reslab.analysis.common import load_target

    checkpoint = run_dir / "checkpoints" / "last.safetensors"
    output = _cli([str(checkpoint), "--plane", "interp", "--from", "init", "--grid", "0:1:3", "--samples", "16",
                   "--split", "test"], capsys)
    assert "interp 1-D" in output
    data = LandscapeResult.load(run_dir / "analysis" / "landscape_interp_init-last_test.npz")
    init = load_target(run_dir, checkpoint="init")
    x, y = init.samples("test", 16, seed=0)
    assert data.loss[0] == pytest.approx(reference_loss(init.model, model_state(init.model), x, y)[0], rel=1e-5)
    assert np.isfinite(data.loss).all() and data.plane["from"] == "init" and data.plane["to"] == "last"
    last = load_target(run_dir, checkpoint="last")
    assert data.loss[-1] == pytest.approx(reference_loss(last.model, model_state(last.model), x, y)[0], rel=1e-5)
    assert (run_dir / "analysis" / "landscape_interp_init-last_test_curve.png").is_file()


def test_cli_random_plane_resumes_and_reuses_directions(run_dir, tmp_path, capsys):
    out = tmp_path / "r.npz"
    first = _cli([str(run_dir), "--grid=-1:1:3", "--samples", "8", "--out", str(out), "--max-points", "4"], capsys)
    assert "incomplete: 5 points left" in first and not (tmp_path / "r_contourf.png").exists()
    _cli([str(run_dir), "--grid=-1:1:3", "--samples", "8", "--out", str(out)], capsys)
    assert LandscapeResult.load(out).complete and (tmp_path / "r_contourf.png").is_file()
    again = tmp_path / "again.npz"
    _cli([str(run_dir), "--grid=-1:1:3", "--samples", "8", "--out", str(again), "--seed", "9",
          "--directions", str(tmp_path / "r.directions.safetensors"), "--no-plots"], capsys)
    np.testing.assert_allclose(LandscapeResult.load(again).loss, LandscapeResult.load(out).loss, rtol=1e-6)


def test_cli_errors_are_one_line(run_dir, capsys):
    for argv, expected in ((["cifar_resnet8", "--data", "digits", "--plane", "pca"], "RUN_DIR"),
                           ([str(run_dir), "--plane", "interp", "--dims", "2"], "--dims 1"),
                           ([str(run_dir), "--grid", "1:-1:5"], "--grid"),
                           ([str(run_dir), "--plane", "interp", "--from", "epoch_99"], "epoch 99")):
        with pytest.raises(SystemExit) as exit_info:
            main(["analyze", "landscape", *argv, "--quiet"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err and "Traceback" not in err, err
