"""reslab.experiments.search: the space, every bad input as one line with nothing written, small studies
(N trials, pruning) on tiny synthetic runs, and the lr-depth experiment with --quick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from reslab.errors import ConfigError  # noqa: E402
from reslab.experiments.search import (  # noqa: E402
    SearchSettings,
    model_for_depth,
    parse_param,
    parse_space,
    read_space_file,
    run_search,
)

TINY = {"data_options": {"num_train": 64, "num_test": 32, "image_size": 8}, "batch_size": 32, "threads": 1}


def tiny_search(out: Path, **changes):
    values = {"model": "cifar_resnet8", "data": "synthetic", "recipe": "digits-degradation",
              "space": {"lr": "loguniform:1e-3:0.5"}, "trials": 3, "epochs": 1, "sampler": "random",
              "overrides": dict(TINY), "out": str(out), "quiet": True}
    values.update(changes)
    return run_search(**values)


def test_space_strings_parse():
    space = parse_space(["lr=loguniform:1e-3:1", "weight_decay=uniform:0:1e-3", "depth=choice:20,56,110",
                         "batch_size=int:32:256", "accumulate=intlog:1:8", "nesterov=choice:true,false"])
    assert space["lr"].kind == "loguniform" and (space["lr"].low, space["lr"].high) == (1e-3, 1.0)
    assert space["weight_decay"].low == 0.0 and space["depth"].choices == (20, 56, 110)
    assert space["batch_size"].low == 32 and isinstance(space["batch_size"].high, int)
    assert space["nesterov"].choices == (True, False)
    assert parse_param("lr", "loguniform:1e-3:1").spec == "loguniform:0.001:1.0"
    assert model_for_depth("resnet20", 56) == "resnet56" and model_for_depth("plain20", 110) == "plain110"
    assert model_for_depth("cifar_plain8", 14) == "cifar_plain14"


def test_space_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[space]\nlr = "loguniform:1e-3:1"\nlabel_smoothing = "uniform:0:0.2"\n')
    assert read_space_file(path) == {"lr": "loguniform:1e-3:1", "label_smoothing": "uniform:0:0.2"}
    settings = SearchSettings(space_file=str(path), space={"lr": "uniform:0.01:0.1"})
    assert settings.params()["lr"].kind == "uniform"  # --space wins over the file


BAD = [
    ({"space": {"learning_rate": "loguniform:1e-3:1"}}, "learning_rate", "did you mean lr"),
    ({"space": {"model": "choice:resnet20"}}, "model", "may not vary"),
    ({"space": {"lr": "gaussian:0:1"}}, "unknown distribution", "e.g. --space"),
    ({"space": {"lr": "loguniform:1:1e-3"}}, "above the high bound", "e.g. --space"),
    ({"space": {"lr": "loguniform:0:1"}}, "positive bounds", "e.g. --space"),
    ({"space": {"lr": "uniform:0.1"}}, "expected uniform:LOW:HIGH", "e.g. --space"),
    ({"space": {"lr": "uniform:a:1"}}, "not a number", "lr="),
    ({"space": {"warmup": "uniform:0:10"}}, "whole number", "warmup=int:"),
    ({"space": {"weight_decay": "uniform:-1:0.1"}}, "weight_decay", "e.g. --space"),
    ({"space": {"depth": "choice:8,9"}}, "depth", "6n+2"),
    ({"space": {"depth": "int:8:20"}}, "depth", "list of depths"),
    ({"space": {}}, "give the search space", "--space"),
    ({"sampler": "grid"}, "--sampler grid", "choice"),
    ({"sampler": "grid", "space": {"lr": "choice:0.1,0.2"}, "trials": 3}, "only 2 points", "--trials"),
    ({"metric": "accuracy"}, "--metric accuracy", "test_loss"),
    ({"storage": "nonsense"}, "--storage nonsense", "postgresql://"),
    ({"space_file": "missing.toml"}, "--space-file", "[space]"),
]


@pytest.mark.parametrize("changes, first, second", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, changes, first, second):
    out = tmp_path / "search"
    with pytest.raises(ConfigError) as raised:
        tiny_search(out, **changes)
    message = str(raised.value)
    assert "\n" not in message and first in message and second in message, message
    assert not out.exists()


def test_small_study_finishes_with_n_trials_and_resumes_without_counting_twice(tmp_path):
    out = tmp_path / "search"
    result = tiny_search(out, trials=2, pruner="none")
    assert result.complete
    summary = json.loads((out / "search.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"] * 2
    assert summary["best"]["value"] == min(t["value"] for t in summary["trials"])
    for trial in summary["trials"]:
        run = out / trial["run"]
        assert (run / "metrics.jsonl").is_file() and run.parent.name == "trials"
    assert (out / "study.db").is_file() and (out / "settings.json").is_file() and (out / "runs.json").is_file()
    # Three trials asked of the same study: one more runs, the first two are kept as they were.
    more = tiny_search(out, trials=3, pruner="none")
    assert [t["number"] for t in more.summary["trials"]] == [0, 1, 2]
    assert more.summary["trials"][:2] == summary["trials"]
    # Other settings on the same study: one line.
    with pytest.raises(ConfigError, match="other settings"):
        tiny_search(out, trials=3, metric="test_error")


def test_median_pruner_prunes_a_clearly_bad_lr(tmp_path):
    # A grid of two good learning rates and two hopeless ones on the digits, in the order the seed gives
    # (0.1, 0.2, then 2e-6, 1e-6); the pruner starts after one finished trial and may stop a trial after
    # its first epoch: the hopeless ones are stopped early.
    out = tmp_path / "search"
    result = tiny_search(out, data="digits", space={"lr": "choice:0.000001,0.000002,0.1,0.2"}, sampler="grid",
                         trials=4, epochs=3, pruner="median", prune_startup=1, prune_warmup=0,
                         overrides={"threads": 1})
    trials = result.summary["trials"]
    assert [t["params"]["lr"] for t in trials][:2] == [0.1, 0.2]
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned, trials
    # Pruned by their numbers alone: however fast a run went, the pruner saw it after each epoch in order.
    assert all(t["params"]["lr"] < 1e-3 for t in pruned)
    assert all(t["state"] == "COMPLETE" and t["epochs"] == 3 for t in trials if t["params"]["lr"] > 1e-3)
    assert len(trials) == 4
    run = out / pruned[0]["run"]
    assert not (run / "stop-request").exists()
    assert (run / "checkpoints" / "last.state.pt").is_file()  # stopped with a checkpoint, not killed
    # reslab sweep status: pruned (done with), not pending.
    from reslab.experiments.index import run_states

    states = {s.name: s.status for s in run_states(out)}
    assert {states[Path(t["run"]).name] for t in pruned} == {"pruned"}


def test_lr_depth_quick_writes_its_json_and_the_report_section(tmp_path):
    from reslab.experiments.lr_depth import run_lr_depth, start_lrs
    from reslab.report.sections import lr_depth as section

    out = tmp_path / "lr-depth"
    result = run_lr_depth(quick=True, depths=[8], trials=2, epochs=1, jobs=1, out=str(out), quiet=True,
                          overrides={**TINY}, data="synthetic", recipe="digits-degradation")
    assert result.complete
    data = json.loads((out / "lr_depth.json").read_text())
    assert data["experiment"] == "lr-depth" and data["depths"] == [8] and data["trials"] == 2
    assert sorted((r["kind"], r["model"]) for r in data["records"]) == [("plain", "cifar_plain8"),
                                                                        ("residual", "cifar_resnet8")]
    for record in data["records"]:
        assert len(record["trials"]) == 2 and isinstance(record["best_lr"], float)
        assert all(1e-3 <= t["lr"] <= 1 and t["final_loss"] > 0 for t in record["trials"])
    # Both twins tried the same log-spaced start points (the twins compare at equal lrs).
    assert [t["lr"] for t in data["records"][0]["trials"]] == [t["lr"] for t in data["records"][1]["trials"]] \
        == start_lrs(1e-3, 1.0, 2)
    assert (out / "lr_depth.png").read_bytes()[:4] == b"\x89PNG"
    html = section.build([], [out])
    assert "Learning rate and depth" in html and "cifar_plain8" in html and "best peak lr" in html
    assert "<img" in html
    assert "cifar_resnet8" in result.table()
    # reslab sweep status on the whole experiment: every study's runs, named by their study.
    from reslab.experiments.index import run_states

    states = run_states(out)
    assert len(states) == 4 and {s.name.split("/")[0] for s in states} == {"cifar_plain8", "cifar_resnet8"}
    assert {s.status for s in states} <= {"finished", "pruned"}


def test_lr_depth_prose_says_what_the_numbers_show():
    from reslab.report.lr_depth_text import verdict

    def record(kind, depth, model, trials):
        done = [t for t in trials if t[2] == "COMPLETE"]
        best = min(done, key=lambda t: t[1])
        return {"kind": kind, "depth": depth, "model": model, "best_lr": best[0], "best_value": best[1],
                "trials": [{"lr": lr, "final_loss": loss, "state": state} for lr, loss, state in trials]}

    residual = [(0.01, 1.0, "COMPLETE"), (0.1, 0.2, "COMPLETE"), (0.5, 0.9, "COMPLETE")]
    chance = [(0.01, 2.31, "COMPLETE"), (0.1, 2.30, "COMPLETE"), (0.5, 2.32, "COMPLETE")]
    data = {"metric": "test_loss", "trials": 3, "records": [
        record("residual", 20, "resnet20", residual), record("residual", 56, "resnet56", residual),
        record("plain", 20, "plain20", [(0.01, 1.5, "COMPLETE"), (0.1, 0.4, "COMPLETE"), (0.5, 0.3, "COMPLETE")]),
        record("plain", 56, "plain56", chance)]}
    text = " ".join(verdict(data))
    assert "plain56 does not train at any lr tried" in text
    assert "Plain nets: only plain20 trains" in text
    assert "Null result" in text and "residual" in text
    assert "1.5× at depth 20" in text and "11.5× at depth 56" in text
