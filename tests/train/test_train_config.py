"""Recipes, overrides and validation of TrainConfig."""

from __future__ import annotations

import pytest

from reslab.errors import ConfigError
from reslab.train import TrainConfig, list_recipes, load_recipe, parse_overrides, resolve_config


def test_shipped_recipes_resolve():
    assert {"cifar10-paper", "cifar10-fast", "digits-quick"} <= set(list_recipes())
    for name in list_recipes():
        config = resolve_config(name)
        assert config.recipe == name


def test_paper_recipe_has_the_papers_settings():
    c = resolve_config("cifar10-paper", model="resnet110")
    assert (c.batch_size, c.lr, c.momentum, c.weight_decay, c.iterations, c.epochs) == (128, 0.1, 0.9, 1e-4, 64000, None)
    assert (c.schedule, c.milestones, c.milestone_unit, c.gamma) == ("step", [32000, 48000], "iterations", 0.1)
    assert (c.warmup, c.warmup_lr, c.warmup_mode, c.warmup_min_depth) == (400, 0.01, "constant", 110)
    assert (c.crop_padding, c.flip, c.cutout, c.label_smoothing, c.ema) == (4, True, 0, 0.0, False)


def test_default_recipe_follows_the_data():
    assert resolve_config(data="digits").recipe == "digits-quick"
    assert resolve_config(data="cifar10").recipe == "cifar10-fast"


def test_overrides_replace_the_length_and_merge_tables():
    c = resolve_config("cifar10-paper", overrides={"epochs": 3, "model_options": {"shortcut": "B"}})
    assert (c.epochs, c.iterations) == (3, None)
    c = c.replace(model_options={"dropout": 0.1})
    assert c.model_options == {"shortcut": "B", "dropout": 0.1}


def test_set_syntax_parses_toml_values_and_dotted_keys():
    values = parse_overrides(["lr=0.2", "nesterov=true", "milestones=[10, 20]", "schedule=cosine",
                              "model_options.shortcut=B", "data_options.num_train=64"])
    assert values == {"lr": 0.2, "nesterov": True, "milestones": [10, 20], "schedule": "cosine",
                      "model_options": {"shortcut": "B"}, "data_options": {"num_train": 64}}
    c = resolve_config("digits-quick", overrides={"epochs": "5", "lr": "0.3", "flip": "yes"})
    assert (c.epochs, c.lr, c.flip) == (5, 0.3, True)


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown recipe 'cifar10-fats'.*did you mean cifar10-fast.*digits-quick"):
        load_recipe("cifar10-fats")


def test_unknown_key_suggests_and_lists():
    with pytest.raises(ConfigError, match=r"unknown setting 'lrr'.*did you mean lr.*settings are: .*weight_decay"):
        parse_overrides(["lrr=0.1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("key, value, message", [
    ("lr", -0.1, "lr=-0.1.*> 0"),
    ("lr", "fast", "lr='fast'.*a number"),
    ("schedule", "linear", "schedule='linear'.*constant, step, cosine, onecycle"),
    ("momentum", 1.5, r"momentum=1.5.*\[0, 1\)"),
    ("batch_size", 0, "--batch-size must be at least 1, got 0"),
    ("accumulate", 3, "accumulate=3.*divisor of batch_size=64"),
    ("milestones", [20, 10], "increasing"),
    ("label_smoothing", 1.0, "label_smoothing"),
    ("flip", "maybe", "true or false"),
])
def test_bad_values_name_the_setting(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("digits-quick", overrides={key: value})


def test_a_length_is_required_and_only_one():
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(epochs=2, iterations=100)
    with pytest.raises(ConfigError, match="length of training"):
        TrainConfig()


def test_bad_recipe_file_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('epochs = 2\nshedule = "cosine"\n')
    with pytest.raises(ConfigError, match="recipe 'mine'.*unknown setting 'shedule'.*did you mean schedule"):
        load_recipe(path)
    path.write_text("epochs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(path)
