"""The report's summary sentences follow the measured numbers, whichever way they go."""

from __future__ import annotations

from reslab.report.findings import (
    curvature_findings,
    gradient_findings,
    gradient_trend,
    landscape_findings,
    lesion_findings,
    num,
    response_depth_findings,
    response_findings,
    twin_pairs,
)


def _grad(label, kind, first, last, checkpoint="init"):
    return {"label": label, "model": label.split("-")[0], "kind": kind, "checkpoint": checkpoint,
            "grad_norm": [first, 1.0, last]}


def test_gradient_trend_names_the_direction_from_the_ratio():
    assert gradient_trend(8.6e5, 0.31)[0] == "explodes"
    assert gradient_trend(1e-13, 0.03)[0] == "vanishes"
    assert gradient_trend(1.0, 3.0)[0] == "flows"
    assert "2.77·10^6-fold" in gradient_trend(8.6e5, 0.31)[1]


def test_gradient_findings_say_explode_with_bn_and_vanish_without():
    bn = gradient_findings([_grad("resnet110-s0", "residual", 4.6, 19.2), _grad("plain110-s0", "plain", 8.6e5, 0.31)])
    assert "plain110-s0: ‖g‖ is 8.6·10^5 at the first layer and 0.31 at the last" in bn
    assert "explode toward the input rather than vanish (Yang et al. 2019" in bn
    assert "vanishing" not in bn and "shortcuts keep" in bn
    classic = gradient_findings([_grad("plain_mlp52-x", "plain", 1e-13, 0.03), _grad("res_mlp52-x", "residual", 5, 5)],
                                with_bn=False)
    assert "classic vanishing gradient" in classic and "without batch norm" in classic and "explode" not in classic
    # Nothing went wrong: no claim of either failure.
    calm = gradient_findings([_grad("resnet20-s0", "residual", 1, 3), _grad("plain20-s0", "plain", 1.3, 0.35)])
    assert "explode toward" not in calm and "vanishing" not in calm and "stays within a factor of 10" in calm


def _resp(label, kind, values):
    return {"label": label, "model": label.split("-")[0], "kind": kind, "checkpoint": "last", "std": values}


def test_response_findings_say_whether_fig7_held():
    held = response_findings([_resp("resnet56-s0", "residual", [0.2, 0.4]), _resp("plain56-s0", "plain", [1.0, 1.0])])
    assert "mean std of 0.300" in held and "smaller, as He et al." in held
    broken = response_findings([_resp("resnet110-s0", "residual", [1.0]), _resp("plain110-s0", "plain", [0.47])])
    assert "did not hold in this run" in broken
    falling = response_depth_findings([_resp("resnet20-s0", "residual", [0.9]), _resp("resnet56-s0", "residual", [0.5]),
                                       _resp("plain56-s0", "plain", [2.0])])
    assert "20 layers 0.900, 56 layers 0.500" in falling and "falls with depth" in falling
    assert "rises with depth" in response_depth_findings([_resp("resnet20-s0", "residual", [0.5]),
                                                          _resp("resnet56-s0", "residual", [0.9])])
    assert "does not fall steadily" in response_depth_findings([
        _resp("resnet20-s0", "residual", [0.5]), _resp("resnet56-s0", "residual", [0.9]),
        _resp("resnet110-s0", "residual", [0.7])])


def _hess(model, kind, lmax, lmin, trace):
    return {"target": {"label": f"{model}-s0", "model": model, "kind": kind, "checkpoint": "last"},
            "lambda_max": lmax, "lambda_min": lmin, "convexity_ratio": abs(lmin / lmax), "trace": trace}


def test_curvature_findings_compare_each_measure_both_ways():
    text = curvature_findings([_hess("resnet56", "residual", 21.3, -0.58, 189), _hess("plain56", "plain", 2553, -17.6, 4951)])
    assert "λmax is 21.3 for resnet56-s0 and 2,550 for plain56-s0" in text and "120× less curved" in text
    assert "less total curvature with shortcuts" in text
    assert "plain net's surface is the more convex-looking here, unlike Li et al." in text
    sharper = curvature_findings([_hess("resnet20", "residual", 50, -10, 300), _hess("plain20", "plain", 10, -0.1, 100)])
    assert "not flatter by this measure (5× sharper)" in sharper and "no less total curvature" in sharper
    assert "residual net's surface is the more convex-looking" not in sharper


def test_landscape_and_lesion_findings_follow_the_numbers():
    group = [{"target": {"label": "resnet56-s0", "model": "resnet56", "kind": "residual", "checkpoint": "last"}},
             {"target": {"label": "plain56-s0", "model": "plain56", "kind": "plain", "checkpoint": "last"}}]
    flat = landscape_findings(group, [{"rise@0.25": 0.01, "rise@0.5": 0.1, "rise@1": 1.0, "origin_loss": 0.05},
                                      {"rise@0.25": 0.2, "rise@0.5": 2.0, "rise@1": 9.0, "origin_loss": 0.06}])
    assert "within 0.5: 0.1 vs 2" in flat and "flatter at every radius, as Li et al." in flat
    assert "different heights" not in flat
    mixed = landscape_findings(group, [{"rise@0.25": 0.1, "rise@0.5": 0.9, "rise@1": 31.5, "origin_loss": 0.05},
                                       {"rise@0.25": 0.14, "rise@0.5": 0.56, "rise@1": 283, "origin_loss": 1.3}])
    assert "flatter within 0.25 and 1 only" in mixed and "different heights: plain56-s0 sits at loss 1.3" in mixed
    none = landscape_findings(group, [{"rise@0.5": 0.9, "origin_loss": 0.05}, {"rise@0.5": 0.5, "origin_loss": 0.06}])
    assert "flatter at no radius, unlike Li et al." in none
    lesion = [{"label": "resnet56-s0", "model": "resnet56", "kind": "residual", "checkpoint": "last",
               "base_error": 0.01, "single_block_error": [0.05, 0.09]},
              {"label": "plain56-s0", "model": "plain56", "kind": "plain", "checkpoint": "last",
               "base_error": 0.02, "single_block_error": [0.9]}]
    text = lesion_findings(lesion)
    assert "by 6.0 points on average (over its 2 blocks)" in text and "88.0 points" in text and "as Veit" in text
    lesion[0]["single_block_error"] = [0.99]
    assert "does not degrade more gracefully" in lesion_findings(lesion)


def test_twin_pairs_match_depth_and_checkpoint_and_num_formats():
    items = [{"model": "cifar_resnet8", "kind": "residual", "checkpoint": "init"},
             {"model": "cifar_plain8", "kind": "plain", "checkpoint": "last"},
             {"model": "cifar_plain8", "kind": "plain", "checkpoint": "init"}]
    assert twin_pairs(items) == [(items[0], items[2])]
    assert [num(v) for v in (0.5, 2553, 8.57e5, 3.12e-4)] == ["0.5", "2,550", "8.57·10^5", "3.12·10^-4"]


def test_degradation_verdict_counts_the_epochs_at_which_the_deeper_net_trains_worse(tmp_path):
    from reslab.report.sections.degradation import verdict

    from tests.report.conftest import degradation_result

    data = degradation_result(tmp_path)
    text = verdict(data)
    # The fake plain nets degrade at every epoch; the fake deeper ResNets are better at every epoch.
    assert "plain nets: final training error" in text
    assert "(higher when deeper; the deeper net's was the higher at 6 of 6 epochs)" in text
    assert "(lower or equal when deeper; the deeper net's was the higher at 0 of 6 epochs)" in text

    # Curves that cross: the deeper net starts worse and ends better.
    for run in data["runs"]:
        if run["kind"] == "residual" and run["depth"] == max(data["depths"]):
            run["curve"]["train_error"] = [0.99, 0.98, 0.97, 0.01, 0.01, 0.01]
    assert "the higher at 3 of 6 epochs" in verdict(data)


def test_response_depth_findings_average_the_nets_of_one_depth():
    text = response_depth_findings([_resp("resnet20-s0", "residual", [0.9]), _resp("resnet20-s1", "residual", [0.5]),
                                    _resp("resnet56-s0", "residual", [0.6])])
    assert "20 layers 0.700, 56 layers 0.600" in text


def test_layer_responses_compare_depths_only_among_nets_trained_alike(tmp_path):
    """A ResNet-20 trained 45 epochs must not stand in for the 6-epoch one, even in the same folder."""
    from reslab.report.sections import responses

    from tests.report.conftest import write_json

    def run(directory, label, value, epochs):
        write_json(directory / "config.json", {"data": "cifar10", "recipe": "cifar10-fast", "epochs": epochs,
                                               "lr": 0.2, "model": label.split("-")[0]})
        write_json(directory / "analysis" / "responses.json",
                   {"analysis": "responses", "format": 1, "target": {"label": label, "checkpoint": "last"},
                    "settings": {"samples": 8}, "series": [_resp(label, "residual", [value])]})
        return directory

    short20 = run(tmp_path / "resnet20-s0", "resnet20-s0", 0.8, epochs=6)
    short56 = run(tmp_path / "resnet56-s0", "resnet56-s0", 0.85, epochs=6)
    long20 = run(tmp_path / "resnet20-long", "resnet20-long", 0.1, epochs=45)
    html = responses.build([long20, short20, short56], [])
    assert "cifar10-fast for 6 epochs on cifar10, last weights: mean response of the residual nets by depth: " \
           "20 layers 0.800, 56 layers 0.850" in html and "It rises with depth" in html
    assert "0.100" not in html.split("<h3")[0]  # the 45-epoch net is in no depth comparison

    # The same results given as their analysis folders are still recognised as trained alike.
    html = responses.build([short20 / "analysis", short56 / "analysis"], [])
    assert "Mean response of the residual nets by depth: 20 layers 0.800, 56 layers 0.850" in html
