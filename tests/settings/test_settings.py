"""Settings as data: one class per analysis/experiment; flags, defaults, validation and budgets derive from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from reslab.analysis import hessian
from reslab.analysis.common import load_target
from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.experiments.landscape import LandscapeExperimentSettings, default_budget
from reslab.settings import Settings, add_arguments, given, parse_key_values, setting, to_arguments


@dataclass(frozen=True)
class Toy(Settings):
    steps: int = setting(10, "how many", minimum=1)
    rate: float = setting(0.5, "how fast", minimum=0, maximum=1)
    method: Literal["a", "b"] = setting("a", "which")
    fast: bool = setting(False, "go fast")
    sizes: tuple[int, ...] = setting((1, 2), "sizes")
    label: str | None = setting(None, "a name")


def test_values_are_coerced_from_the_type_hints_and_checked_with_the_flag_name():
    toy = Toy(steps="7", rate=1, fast="yes", sizes="[3, 4]")
    assert (toy.steps, toy.rate, toy.fast, toy.sizes) == (7, 1.0, True, (3, 4))
    with pytest.raises(ConfigError, match="--steps must be at least 1, got 0"):
        Toy(steps=0)
    with pytest.raises(ConfigError, match="--rate must be at most 1"):
        Toy(rate=2.0)
    with pytest.raises(ConfigError, match="--method: 'c' is not valid; expected one of a, b"):
        Toy(method="c")
    with pytest.raises(ConfigError, match="--steps: 2.5 is not valid; expected a whole number"):
        Toy(steps=2.5)
    with pytest.raises(ConfigError, match="unknown setting 'step'.*did you mean steps"):
        Toy().replace(step=3)


def test_flags_help_and_defaults_come_from_the_class_and_round_trip():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy)
    text = parser.format_help()
    assert "--steps N" in text and "(default 10)" in text and "{a,b}" in text and "--fast, --no-fast" in text
    assert Toy.of(given(parser.parse_args([]), Toy)) == Toy()
    wanted = Toy(steps=3, method="b", fast=True, sizes=(5,), label="x")
    assert Toy.of(given(parser.parse_args(to_arguments(wanted, base=Toy())), Toy)) == wanted


def test_one_key_value_parser():
    assert parse_key_values(["lr=0.1", "flag=true", "name=cosine", "ms=[1, 2]", "model_options.shortcut=B"],
                            "--set", tables=("model_options",)) == {
        "lr": 0.1, "flag": True, "name": "cosine", "ms": [1, 2], "model_options": {"shortcut": "B"}}
    with pytest.raises(ConfigError, match="--data-option 'oops': expected KEY=VALUE"):
        parse_key_values(["oops"], "--data-option")


def test_a_default_changed_in_one_place_shows_in_help_api_and_budget(monkeypatch, capsys):
    @dataclass(frozen=True)
    class Changed(hessian.HessianSettings):
        tol: float = setting(2.5e-3, "stop an eigenvalue when it changes by less than this, relatively", minimum=0)

    monkeypatch.setattr(hessian, "HessianSettings", Changed)
    with pytest.raises(SystemExit):
        main(["analyze", "hessian", "--help"])
    assert "relatively (default 0.0025)" in " ".join(capsys.readouterr().out.split())
    target = load_target("cifar_resnet8", data="synthetic", data_options={"num_train": 16, "num_test": 8,
                                                                          "image_size": 8})
    result = hessian.analyze_hessian(target, samples=8, top_k=1, max_iterations=2, extreme_steps=2)
    assert result.settings["tol"] == 2.5e-3
    assert default_budget("digits").hessian.tol == 2.5e-3
    assert default_budget("cifar10").hessian.tol == 2.5e-3


def test_experiment_settings_check_what_the_experiment_fixes():
    with pytest.raises(ConfigError, match="--set model"):
        LandscapeExperimentSettings(overrides={"model": "resnet20"})
    with pytest.raises(ConfigError, match="--planes"):
        LandscapeExperimentSettings(planes=("hilly",))


def test_an_experiments_command_parses_back_into_its_settings(tmp_path):
    import shlex

    from reslab.cli.main import build_parser
    from reslab.experiments.common import experiment_command, write_settings_file
    from reslab.train import parse_overrides

    wanted = LandscapeExperimentSettings(models=("resnet20", "plain20"), data="synthetic", grid="-1:1:5", samples=64,
                                         planes=("random",), hessian=False, overrides={"lr": 0.05}, jobs=2,
                                         out=str(tmp_path / "x"))
    command = experiment_command(["reslab", "experiment", "landscape"], wanted, always=("models", "data"))
    assert "--grid=-1:1:5" in command and "--set lr=0.05" in command and "--no-hessian" in command
    args = build_parser().parse_args(shlex.split(command)[1:])
    back = LandscapeExperimentSettings.of(given(args, LandscapeExperimentSettings),
                                          overrides=parse_overrides(args.settings))
    assert back == wanted
    path = write_settings_file(tmp_path, wanted, command)
    import json

    saved = json.loads(path.read_text())
    assert saved["command"] == command and saved["settings"]["planes"] == ["random"]


@pytest.mark.parametrize("flag, example", [("--model-option", "--model-option shortcut=B"),
                                           ("--data-option", "--data-option num_train=256"),
                                           ("--set", "--set lr=0.2")])
def test_a_malformed_key_value_shows_an_example_of_its_own_flag(flag, example):
    with pytest.raises(ConfigError, match=rf"{flag} 'shortcut_pad': expected KEY=VALUE, e.g. {example}$"):
        parse_key_values(["shortcut_pad"], flag)


def test_a_model_option_without_value_is_refused_with_a_model_option_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "gradients", "cifar_resnet8", "--data", "digits", "--model-option", "shortcut_pad"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--model-option 'shortcut_pad': expected KEY=VALUE, e.g. --model-option shortcut=B")
    assert "num_train" not in err and len(err.splitlines()) == 1
