"""Plots draw what the result files hold: lines per series, log scales, gaps for zeros, empty inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from reslab.report import plots
from reslab.report.html import figure_to_png


def lines_with_labels(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_gradient_flow_plots_every_series_on_log_axes(fakes):
    figure = plots.plot_gradient_flow(fakes.gradients_result())
    grad_ax, ratio_ax = figure.axes
    assert grad_ax.get_yscale() == "log" and ratio_ax.get_yscale() == "log"
    lines = lines_with_labels(grad_ax)
    assert set(lines) == {"resnet8 @ init", "plain8 @ init"}
    np.testing.assert_allclose(lines["plain8 @ init"].get_xdata(), np.arange(1, 9))
    assert "lr" in ratio_ax.get_ylabel()


def test_classic_plot_leaves_gaps_for_underflowed_zeros_and_says_so(fakes):
    figure = plots.plot_classic_gradients(fakes.gradients_result())
    (ax,) = [a for a in figure.axes if a.get_visible()]
    plain = lines_with_labels(ax)["plain MLP, tanh, no BN"]
    assert math.isnan(plain.get_ydata()[0]) and plain.get_ydata()[1] > 0
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "exactly 0" in texts and "underflows" in texts


def test_lesion_plot_percentages_and_baselines(fakes):
    figure = plots.plot_lesion(fakes.lesion_result())
    single_ax, k_ax = figure.axes[:2]
    residual = lines_with_labels(single_ax)["resnet8"]
    np.testing.assert_allclose(residual.get_ydata(), [12.0, 20.0, 15.0])
    k_line = lines_with_labels(k_ax)["resnet8"]
    np.testing.assert_allclose(k_line.get_xdata(), [0, 1, 2, 3])  # k = 0 is the unlesioned net
    np.testing.assert_allclose(k_line.get_ydata(), [10.0, 16.0, 30.0, 50.0])
    assert single_ax.get_ylim()[0] == 0


def test_responses_sorted_panel_is_descending(fakes):
    figure = plots.plot_responses(fakes.responses_result())
    sorted_plain = lines_with_labels(figure.axes[1])["plain8"].get_ydata()
    assert list(sorted_plain) == sorted(sorted_plain, reverse=True)


def test_degradation_curves_plain_left_residual_right(experiment_dir, fakes):
    data = fakes.degradation_result(experiment_dir, seeds=(0, 1))
    figure = plots.plot_degradation_curves(data)
    plain_ax, residual_ax = figure.axes
    assert "Plain" in plain_ax.get_title() and "Residual" in residual_ax.get_title()
    labels = set(lines_with_labels(plain_ax))
    assert {"plain-8 (2 seeds)", "plain-20 (2 seeds)", "train (bold)", "test (dashed)"} <= labels
    assert "ResNet-14 (2 seeds)" in lines_with_labels(residual_ax)
    assert plain_ax.get_xlabel() == "iteration"
    top = max(float(np.nanmax(line.get_ydata())) for ax in (plain_ax, residual_ax) for line in ax.get_lines()
              if len(line.get_ydata()))
    assert plain_ax.get_ylim()[1] >= top  # nothing clipped

    depth_figure = plots.plot_error_vs_depth(data)
    train_ax = depth_figure.axes[0]
    assert train_ax.get_xscale() == "log"
    assert [t.get_text() for t in train_ax.get_xticklabels()] == ["8", "14", "20"]


@pytest.mark.parametrize("plot", [plots.plot_gradient_flow, plots.plot_classic_gradients, plots.plot_shattered,
                                  plots.plot_responses, plots.plot_lesion, plots.plot_degradation_curves,
                                  plots.plot_error_vs_depth])
def test_every_plot_copes_with_an_empty_result(plot):
    assert isinstance(plot({}), Figure)


def test_training_curves_grid_and_save_figure(tmp_path):
    rows = [{"epoch": e, "train_error": 0.5 / e, "test_error": 0.6 / e, "train_loss": 1 / e, "test_loss": 1.2 / e}
            for e in range(1, 4)]
    figure = plots.plot_training_curves([("a", rows), ("b", rows), ("c", rows), ("empty", [])])
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 6  # two panels for each run with metrics
    path = plots.save_figure(figure, tmp_path / "sub" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*.tmp"))


def test_series_colors_blue_for_residual_red_for_plain():
    colors = plots.series_colors([{"kind": "residual"}, {"kind": "plain"}])
    assert colors == [plots.KIND_COLORS["residual"], plots.KIND_COLORS["plain"]]
    shades = plots.series_colors([{"kind": "residual"}, {"kind": "residual"}, {"kind": "plain"}])
    assert shades[0] != shades[1] and shades[2] == plots.KIND_COLORS["plain"]


# -- short runs: every per-epoch curve plot draws through plots.plot_curve ---------------------------
def visible_xticks(ax) -> list[float]:
    low, high = sorted(ax.get_xlim())
    return [float(t) for t in ax.get_xticks() if low <= t <= high]


def assert_dotted_with_integer_epochs(ax) -> None:
    drawn = [line for line in ax.get_lines() if len(line.get_xdata())]
    assert drawn and all(line.get_marker() == "o" for line in drawn)
    ticks = visible_xticks(ax)
    assert ticks and all(t == int(t) for t in ticks)


def one_epoch_rows() -> list[dict]:
    return [{"epoch": 1, "train_error": 0.68, "test_error": 0.52, "train_loss": 2.5, "test_loss": 1.96}]


def test_one_epoch_training_curves_draw_dots_and_integer_epoch_ticks():
    figure = plots.plot_training_curves([("t1", one_epoch_rows())])
    figure_to_png(figure)  # ticks are placed as when the report renders it
    for ax in figure.axes:
        assert_dotted_with_integer_epochs(ax)
        assert visible_xticks(ax) == [1.0]
        train, test = ax.get_lines()
        # What the caption (plots.curve_key) says: bold solid filled = training, thin dashed open = test.
        assert train.get_linestyle() == "-" and test.get_linestyle() == "--"
        assert train.get_linewidth() > test.get_linewidth()
        assert train.get_markerfacecolor() == train.get_color() and test.get_markerfacecolor() == "white"
    caption = plots.curve_key()
    assert "bold solid lines = training" in caption and "thin dashed lines = test" in caption
    assert "filled for training, open for test" in caption


def test_long_curves_are_lines_without_dots():
    rows = [{"epoch": e, "train_error": 0.5 / e, "test_error": 0.6 / e, "train_loss": 1 / e, "test_loss": 1.2 / e}
            for e in range(1, plots.FEW_POINTS + 2)]
    figure = plots.plot_training_curves([("long", rows)])
    assert all(line.get_marker() in ("None", None) for ax in figure.axes for line in ax.get_lines())
    rows = rows[:plots.FEW_POINTS]
    figure = plots.plot_training_curves([("short", rows)])
    assert all(line.get_marker() == "o" for ax in figure.axes for line in ax.get_lines())


def test_one_epoch_degradation_curves_have_dots_in_lines_and_legend(experiment_dir, fakes):
    data = fakes.degradation_result(experiment_dir)
    for run in data["runs"]:
        run["curve"] = {key: values[:1] for key, values in run["curve"].items()}
    figure = plots.plot_degradation_curves(data)
    figure_to_png(figure)
    for ax in figure.axes:
        assert_dotted_with_integer_epochs(ax)
        legend = {line.get_label(): line for line in ax.get_lines() if not len(line.get_xdata())}
        assert legend["train (bold)"].get_marker() == "o" and legend["train (bold)"].get_markerfacecolor() != "white"
        assert legend["test (dashed)"].get_markerfacecolor() == "white"


def test_long_degradation_curves_keep_their_legend_without_dots(experiment_dir, fakes):
    data = fakes.degradation_result(experiment_dir)
    for run in data["runs"]:
        run["curve"] = {key: values * 2 for key, values in run["curve"].items()}  # 12 points
    figure = plots.plot_degradation_curves(data)
    assert all(line.get_marker() in ("None", None) for ax in figure.axes for line in ax.get_lines())


def test_one_epoch_sweep_curves_draw_dots_and_integer_epoch_ticks():
    from reslab.report.sweep_plots import plot_depth_curves

    records = [{"name": f"{variant}-d2-s0", "model": "transformer2", "variant": variant,
                "residual": variant == "residual", "depth": 2, "final_train_loss": loss, "final_val_loss": loss + 0.1,
                "curves": {"epoch": [1], "train_loss": [loss], "val_loss": [loss + 0.1]}}
               for variant, loss in (("residual", 2.0), ("plain", 2.4))]
    figure = plot_depth_curves({"experiment": "transformer", "records": records, "loss_unit": "nats/char"})
    figure_to_png(figure)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    assert_dotted_with_integer_epochs(ax)
    styles = {line.get_label(): (line.get_linestyle(), line.get_markerfacecolor()) for line in ax.get_lines()}
    assert styles["residual train"][0] == "-" and styles["residual val"] == ("--", "white")


def test_one_epoch_segmentation_curves_draw_dots_and_integer_epoch_ticks():
    from reslab.report.segmentation_plots import plot_segmentation_curves

    row = {"epoch": 1, "test_miou": 0.4, "test_pixel_accuracy": 0.8, "train_loss": 0.9}
    figure = plot_segmentation_curves([{"label": "res", "kind": "residual", "rows": [row]},
                                       {"label": "plain", "kind": "plain", "rows": [dict(row, test_miou=0.3)]}])
    figure_to_png(figure)
    for ax in figure.axes:
        assert_dotted_with_integer_epochs(ax)
        residual, plain = ax.get_lines()
        assert residual.get_markerfacecolor() != "white" and plain.get_markerfacecolor() == "white"


def test_training_caption_names_the_styles_a_one_epoch_run_is_drawn_with(tmp_path, fakes):
    from reslab.report.sections import training

    run = fakes.make_run(tmp_path / "t1", "cifar_resnet8", "residual", 8, epochs=1)
    html = training.build([run], [])
    assert f"per epoch: {plots.curve_key()}." in html
    assert "dot per epoch, filled for training, open for test" in html
