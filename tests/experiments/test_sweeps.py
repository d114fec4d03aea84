"""The beyond-CNN sweeps: each trains its grid through the one trainer and writes EXP_DIR/<name>.json."""

from __future__ import annotations

import json
import math

import pytest

from reslab.cli.main import main as reslab_main
from reslab.errors import ConfigError
from reslab.experiments.sweeps import run_sweep

REQUIRED = ("depth", "residual", "final_train_loss", "final_val_loss")


def main(argv) -> int:
    with pytest.raises(SystemExit) as stop:
        reslab_main(argv)
    return stop.value.code


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # A small English text with structure to learn; the default corpus is tested in test_text_data.
    words = "the residual block adds its input to the output of two layers so the signal can pass".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(3000))
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def _summary(out, name):
    summary = json.loads((out / f"{name}.json").read_text())
    assert summary["experiment"] == name and summary["format"] == 1 and summary["complete"]
    for record in summary["records"]:
        for key in REQUIRED:
            assert key in record, key
        assert isinstance(record["depth"], int) and isinstance(record["residual"], bool)
        assert math.isfinite(record["final_train_loss"]) and math.isfinite(record["final_val_loss"])
        assert len(record["curves"]["train_loss"]) == record["epochs"]
    assert (out / "settings.json").is_file()
    return summary


def test_transformer_sweep_records_losses_and_rank_collapse(tmp_path, corpus):
    out = tmp_path / "tf"
    result = run_sweep("transformer", out=str(out), text=str(corpus), depths=(1, 3), width=16, context=16,
                       quick=True, quiet=True)
    summary = _summary(out, "transformer")
    assert result.complete and len(summary["records"]) == 4
    assert {(r["depth"], r["residual"]) for r in summary["records"]} == {(1, True), (1, False), (3, True), (3, False)}
    for record in summary["records"]:
        collapse = record["rank_collapse"]
        assert len(collapse["layers"]) == record["depth"] + 1 == len(collapse["relative_residual"])
        assert record["bits_per_char"] == pytest.approx(record["final_val_loss"] / math.log(2))
    # Resumable: the same call reuses every run and writes the same records.
    again = run_sweep("transformer", out=str(out), text=str(corpus), depths=(1, 3), width=16, context=16,
                      quick=True, quiet=True)
    assert again.trained == 0
    assert [r["final_val_loss"] for r in again.records] == [r["final_val_loss"] for r in summary["records"]]


def test_rnn_mlp_dropout_family_sweeps_run_from_the_cli(tmp_path, corpus, capsys):
    base = ["--quick", "--quiet", "--epochs", "1"]
    assert main(["experiment", "rnn", "--out", str(tmp_path / "rnn"), "--text", str(corpus), "--depths", "2",
                 "--cells", "gru", "--width", "16", "--context", "16", *base]) == 0
    rnn = _summary(tmp_path / "rnn", "rnn")
    assert {(r["cell"], r["residual"]) for r in rnn["records"]} == {("gru", True), ("gru", False)}

    assert main(["experiment", "mlp", "--out", str(tmp_path / "mlp"), "--depths", "3", "6", "--norms", "none",
                 "--width", "16", *base]) == 0
    mlp = _summary(tmp_path / "mlp", "mlp")
    deep = [r for r in mlp["records"] if r["depth"] == 6]
    assert all(len(r["gradient_norms"]["norms"]) == 6 for r in deep)

    assert main(["experiment", "dropout", "--out", str(tmp_path / "dropout"), "--text", str(corpus),
                 "--rates", "0", "0.5", "--depth", "1", "--width", "16", "--context", "16", *base]) == 0
    dropout = _summary(tmp_path / "dropout", "dropout")
    assert sorted({r["dropout"] for r in dropout["records"]}) == [0.0, 0.5]

    assert main(["experiment", "family", "--out", str(tmp_path / "family"), "--models", "resnet20", "plain20",
                 *base]) == 0
    family = _summary(tmp_path / "family", "family")
    assert [r["variant"] for r in family["records"]] == ["residual", "plain"]
    assert family["records"][0]["params"] > 250_000
    printed = capsys.readouterr().out
    assert "final losses" in printed and "family.json" in printed


def test_bad_sweep_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="--variants"):
        run_sweep("transformer", out=str(tmp_path), variants=("residual", "gated"), quick=True)
    with pytest.raises(ConfigError, match="--cells"):
        run_sweep("rnn", out=str(tmp_path), cells=("tcn",), quick=True)
    with pytest.raises(ConfigError, match="unknown sweep"):
        run_sweep("cnn")
