"""``reslab demo``: its plumbing on a tiny setting (depth 8, one epoch), and that the default is the real demo."""

from __future__ import annotations

import json

import pytest

from reslab.cli.demo import DEMO_RECIPE, analysis_commands, curvature_depth
from reslab.cli.main import build_parser
from reslab.train import resolve_config


def test_demo_defaults_are_the_real_demo():
    args = build_parser().parse_args(["demo"])
    assert (args.out, args.depths, args.epochs, args.quiet) == ("demo", [20, 56, 110], None, False)
    # The demo: a 15-epoch one-cycle schedule on the digits, the same for plain and residual.
    config = resolve_config(DEMO_RECIPE, model="resnet110")
    assert (config.data, config.epochs, config.schedule) == ("digits", 15, "onecycle")


def test_demo_analyses_every_depth_with_lesions_where_affordable(tmp_path):
    commands = analysis_commands(tmp_path, [20, 56, 110])
    kinds = [(c[1], c[2].split("/")[-1]) for c in commands]
    assert ("gradients", "resnet110-s0") in kinds and ("responses", "resnet20-s0") in kinds
    assert ("lesion", "resnet56-s0") in kinds and ("lesion", "resnet110-s0") not in kinds
    assert all("--twin" in c for c in commands if c[1] not in ("landscape", "hessian"))
    # The no-BN classic case does not depend on the run: measured once.
    gradients = [c for c in commands if c[1] == "gradients"]
    assert sum("--no-classic" not in c for c in gradients) == 1
    # Landscape (2-D and 1-D) and Hessian of the depth-56 twins, one command per network, first (slowest).
    curvature = [(c[1], c[2].split("/")[-1]) for c in commands if c[1] in ("landscape", "hessian")]
    assert sorted(curvature) == sorted([("landscape", "resnet56-s0"), ("landscape", "plain56-s0")] * 2
                                       + [("hessian", "resnet56-s0"), ("hessian", "plain56-s0")])
    assert commands[0][1] == "landscape" and "--twin" not in commands[0]
    assert curvature_depth([8]) == 8 and curvature_depth([20, 110]) == 20


@pytest.mark.slow
def test_tiny_demo_trains_analyses_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    args = build_parser().parse_args(["demo", "--out", str(out), "--depths", "8", "--epochs", "1", "--jobs", "1",
                                      "--quiet"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out

    experiment = out / "degradation"
    summary = json.loads((experiment / "degradation.json").read_text())
    assert summary["recipe"] == DEMO_RECIPE and summary["dataset"] == "digits"
    assert sorted(r["run"] for r in summary["runs"]) == ["cifar_plain8-s0", "cifar_resnet8-s0"]
    analysis = experiment / "cifar_resnet8-s0" / "analysis"
    for name in ("gradients", "responses", "lesion"):
        result = json.loads((analysis / f"{name}.json").read_text())
        assert {s["kind"] for s in result["series"]} == {"residual", "plain"}  # the twin was analysed too
        assert (analysis / f"{name}.png").is_file()

    html = (out / "report.html").read_text()
    for heading in ("Degradation", "Gradient flow", "Layer responses", "Lesion study", "Loss landscape", "Curvature"):
        assert heading in html
    for name in ("landscape_random_2d.npz", "landscape_random_1d.npz", "hessian.json"):
        assert (analysis / name).is_file() and (experiment / "cifar_plain8-s0" / "analysis" / name).is_file()
    assert "In this run, λmax is" in html  # the curvature sentence, generated from the two results
    assert "data:image/png;base64," in html
    assert "$ reslab analyze lesion" in (out / "analyses.log").read_text()

    # The printed table holds each model's measured errors, and the report's path.
    for run in summary["runs"]:
        line = next(line for line in printed.splitlines() if line.startswith(run["model"] + " "))
        assert f"{100 * run['final_train_error']:.2f}%" in line
        assert f"{100 * run['final_test_error']:.2f}%" in line
    assert f"report: {out / 'report.html'}" in printed
    assert "runs trained now: 2 of 2" in printed  # rerunning reuses them: tests/experiments
