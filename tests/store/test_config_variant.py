"""A run's variant (residual, plain, highway, dense, rezero) comes from its model and options, never
from a piece of its name; plain/residual twin-pairing keeps working on it."""

from __future__ import annotations

import json

import pytest

from reslab.store.rundir import KIND_PLAIN, KIND_RESIDUAL, config_kind, config_variant


@pytest.mark.parametrize("config, variant", [
    ({"model": "resnet20"}, "residual"),
    ({"model": "plain20"}, "plain"),
    ({"model": "cifar_plain32"}, "plain"),
    ({"model": "resnet20", "model_options": {"shortcut": "none"}}, "plain"),
    ({"model": "plain20", "model_options": {"shortcut": "A"}}, "residual"),
    ({"model": "highway20"}, "highway"),
    ({"model": "highway20", "model_settings": {"shortcut": "A", "gated": True}}, "highway"),
    ({"model": "resnet20", "model_options": {"gated": True}}, "highway"),
    ({"model": "densenet_bc_52_12", "model_settings": {"dropout": 0.0, "compression": 0.5}}, "dense"),
    ({"model": "transformer2", "model_options": {"merge": "none"}}, "plain"),
    ({"model": "transformer2", "model_settings": {"merge": "sum", "width": 32}}, "residual"),
    ({"model": "transformer4", "model_options": {"merge": "rezero"}}, "rezero"),
    ({"model": "transformer4", "model_options": {"merge": "highway"}}, "highway"),
    ({"model": "rezero_transformer4"}, "rezero"),
    ({"model": "plain_transformer4"}, "plain"),
    ({"model": "plain_lstm2"}, "plain"),
    ({"model": "lstm2", "model_settings": {"merge": "none"}}, "plain"),
    ({"model": "resmlp5"}, "residual"),
    ({"model": "plain_mlp5"}, "plain"),
    ({"model": "unet_plain20"}, "plain"),
    ({"model": "unet_resnet20"}, "residual"),
])
def test_the_variant_follows_the_model_and_its_options(config, variant):
    assert config_variant(config) == variant


def test_a_name_that_merely_contains_plain_is_not_plain():
    assert config_variant({"model": "explainer20"}) == "residual"
    assert config_kind("explainer20", {}) == KIND_RESIDUAL


def test_twin_kinds_see_a_merge_option():
    assert config_kind("transformer2", {"merge": "none"}) == KIND_PLAIN
    assert config_kind("plain56", {}) == KIND_PLAIN and config_kind("resnet56", {}) == KIND_RESIDUAL
    assert config_kind("highway20", {}) == KIND_RESIDUAL  # a path around the branch: the residual side of a pair


def test_the_report_runs_table_shows_each_runs_variant(tmp_path):
    from reslab.report.sections import runs

    configs = {"t-plain": {"model": "transformer2", "model_options": {"merge": "none"}, "data": "text"},
               "hw": {"model": "highway20", "data": "digits"},
               "dn": {"model": "densenet_bc_52_12", "data": "digits"},
               "r20": {"model": "resnet20", "data": "digits"}}
    dirs = []
    for name, config in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        dirs.append(tmp_path / name)
    html = runs.build(dirs, [])
    cells = {name: html.split(f"<td>{name}</td>", 1)[1].split("</tr>", 1)[0] for name in configs}
    assert "<td>plain</td>" in cells["t-plain"]
    assert "<td>highway</td>" in cells["hw"]
    assert "<td>dense</td>" in cells["dn"]
    assert "<td>residual</td>" in cells["r20"]
    assert "<th>variant</th>" in html
