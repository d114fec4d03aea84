"""The "Beyond CNNs" report section, against hand-written summary files of the five sweeps
(transformer, rnn, mlp, dropout, family): tables, generated sentences, figures, missing fields."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from reslab.cli.main import main
from reslab.report import build_report, collect_dirs, discover_sections
from reslab.report.sections import beyond_cnns


def write_summary(directory: Path, name: str, axis: str, records: list[dict], *, unit: str = "nats/char",
                  complete: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {"experiment": name, "format": 1, "created": "2026-12-02T12:00:00Z", "versions": {"reslab": "0"},
            "settings": {"quick": True}, "command": f"reslab experiment {name} --out {directory}",
            "data": {"name": "text", "source": "Python's pydoc_data/topics.py", "description": "help topics"},
            "axis": axis, "loss_unit": unit, "complete": complete, "records": records}
    path = directory / f"{name}.json"
    # json.dumps writes a float NaN as the bare token NaN: the report must show it as "—", not "nan".
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def record(name: str, variant: str, depth: int | None, train: float | None, val: float | None, **extra) -> dict:
    out = {"name": name, "model": extra.pop("model", name.rsplit("-", 1)[0]), "run_dir": name, "variant": variant,
           "residual": variant != "plain", "depth": depth, "final_train_loss": train, "final_val_loss": val}
    out.update(extra)
    return out


def curves(final: float, epochs: int = 3) -> dict:
    train = [final * (1 + 1.0 / e) for e in range(1, epochs + 1)]
    return {"epoch": list(range(1, epochs + 1)), "train_loss": train, "val_loss": [t + 0.1 for t in train]}


def transformer_records(residual_deep: float, plain_deep: float) -> list[dict]:
    recs = []
    for depth, res, plain in ((2, 1.9, 2.0), (8, residual_deep, plain_deep)):
        for variant, loss in (("residual", res), ("plain", plain)):
            recs.append(record(f"{variant}-d{depth}-s0", variant, depth, loss, loss + 0.1, model=f"transformer{depth}",
                               dropout=0.0, params=1000 * depth, epochs=3, wall_s=12.3 * depth,
                               bits_per_char=(loss + 0.1) / math.log(2), curves=curves(loss),
                               rank_collapse={"layers": list(range(depth + 1)),
                                              "relative_residual": [0.9 / (1 + i) ** (1 if variant == "residual"
                                                                                      else 3)
                                                                    for i in range(depth + 1)],
                                              "init": [0.8 / (1 + i) for i in range(depth + 1)]}))
    return recs


@pytest.fixture
def sweeps(tmp_path) -> dict[str, Path]:
    """One directory per experiment, holding only its summary file (no run directories)."""
    root = tmp_path / "exp"
    dirs = {}
    # transformer: residual wins clearly at the deepest depth.
    dirs["transformer"] = root / "transformer"
    write_summary(dirs["transformer"], "transformer", "depth", transformer_records(1.23, 2.45))
    # rnn: two cells; the GRU's plain twin wins; missing curves, null wall time, a missing val loss.
    rnn = []
    for cell, (res, plain) in (("lstm", (1.5, 2.5)), ("gru", (2.2, 1.8))):
        for depth in (2, 6):
            for variant, loss in (("residual", res), ("plain", plain)):
                rnn.append(record(f"{cell}-{variant}-d{depth}-s0", variant, depth, loss, None if depth == 2 else loss,
                                  cell=cell, model=f"{cell}{depth}", wall_s=None, epochs=2))
    dirs["rnn"] = root / "rnn"
    write_summary(dirs["rnn"], "rnn", "depth", rnn)
    # mlp: two norms, gradient norms at init, cross-entropy; residual and plain within 2 % with batch norm.
    mlp = []
    for norm in ("batch", "none"):
        for depth in (3, 20):
            for variant in ("residual", "plain"):
                train = 0.100 if variant == "residual" else (0.101 if norm == "batch" else 2.3)
                layers = list(range(1, depth + 1))
                decay = 1.0 if variant == "residual" else 0.5
                mlp.append(record(f"{variant}-{norm}-d{depth}-s0", variant, depth, train, train + 0.05, norm=norm,
                                  final_val_error=0.03 if variant == "residual" else 0.5, wall_s=4.0, epochs=8,
                                  gradient_norms={"layers": layers,
                                                  "norms": [decay ** (depth - i) for i in layers]}))
    dirs["mlp"] = root / "mlp"
    write_summary(dirs["mlp"], "mlp", "depth", mlp, unit="cross-entropy")
    # dropout grid: residual best at 0.1, plain best at 0.3; one run unfinished (null losses).
    grid = []
    for rate, res, plain in ((0.0, 1.60, 2.40), (0.1, 1.45, 2.30), (0.3, 1.50, 2.01), (0.5, None, 2.2)):
        grid.append(record(f"residual-d4-p{rate:g}-s0", "residual", 4, None if res is None else res - 0.2, res,
                           dropout=rate, wall_s=30.0))
        grid.append(record(f"plain-d4-p{rate:g}-s0", "plain", 4, plain - 0.1, plain, dropout=rate, wall_s=31.0,
                           bits_per_char=plain / math.log(2)))
    dirs["dropout"] = root / "dropout"
    write_summary(dirs["dropout"], "dropout", "dropout", grid)
    # family: incomplete, the DenseNet not finished (no params, no val error).
    family = [record("resnet20-s0", "residual", 20, 0.05, 0.20, model="resnet20", params=272474, final_val_error=0.061),
              record("plain20-s0", "plain", 20, 0.12, 0.35, model="plain20", params=270410, final_val_error=0.094),
              record("highway20-s0", "highway", 20, 0.07, 0.25, model="highway20", params=280000,
                     final_val_error=0.072),
              {"name": "densenet-s0", "model": "densenet_bc40", "variant": "dense", "residual": False, "depth": 40,
               "final_train_loss": None, "final_val_loss": None}]
    dirs["family"] = root / "family"
    write_summary(dirs["family"], "family", "model", family, unit="cross-entropy", complete=False)
    return dirs


def count_imgs(html: str) -> int:
    return html.count("<img")


def subsections(html: str) -> dict[str, str]:
    parts = re.split(r'<div class="subsection"><h3>', html)[1:]
    return {p.split("</h3>", 1)[0]: p for p in parts}


def test_section_is_discovered_after_degradation():
    titles = [m.TITLE for m in discover_sections()]
    assert titles.index("Degradation") < titles.index(beyond_cnns.TITLE) < titles.index("Gradient flow")


def test_every_subsection_with_numbers_sentences_and_figures(sweeps):
    html = beyond_cnns.build([], list(sweeps.values()))
    assert html and html.startswith('<section id="beyond-cnns">')
    parts = subsections(html)
    assert list(parts) == [beyond_cnns.HEADINGS[n] for n in ("transformer", "rnn", "mlp", "dropout", "family")]
    transformer, rnn, mlp, dropout, family = parts.values()

    # transformer: residual wins; table numbers; bits/char; rank collapse; command.
    assert ("At depth 8, the residual transformer reached a training loss of 1.23 nats/char against 2.45 for its "
            "plain twin (1.22 lower).") in transformer
    assert "<td>1.23</td>" in transformer and "<td>2.45</td>" in transformer and "<td>2.55</td>" in transformer
    assert "bits/char" in transformer and "<td>98 s</td>" in transformer  # 12.3 * 8 s
    assert "the plain transformer&#x27;s rose (2 at depth 2, 2.45 at depth 8)" in transformer
    assert "the last layer&#x27;s relative residual" in transformer
    assert "0.1 for the residual transformer and 0.00123 for the plain one (the plain one is closer to rank 1)" \
        in transformer
    assert "<code>reslab experiment transformer --out" in transformer
    assert count_imgs(transformer) == 3  # loss vs depth, curves at the deepest depth, rank collapse

    # rnn: one sentence per cell; the GRU's plain twin wins; missing numbers shown as —.
    assert "At depth 6, the residual LSTM stack reached a training loss of 1.5 nats/char against 2.5" in rnn
    assert "At depth 6, the plain GRU stack reached a lower training loss than its residual twin: 1.8 nats/char " \
           "against 2.2 (0.4 lower)." in rnn
    assert rnn.index("LSTM stack reached") < rnn.index("GRU stack reached")  # the records' order
    assert "<td>—</td>" in rnn  # val loss at depth 2, wall time
    assert count_imgs(rnn) == 1  # no curves recorded: only loss vs depth

    # mlp: split by norm, within 2 % with BN, gradient norms.
    assert "At depth 20 (batch norm), the residual and plain MLPs reached about the same training loss" in mlp
    assert "At depth 20 (no norm), the residual MLP reached a training loss of 0.1 against 2.3" in mlp
    assert "nats" not in mlp.split("<table")[0].split("</dl>")[0]  # unitless cross-entropy
    assert "the gradient norm of the first weight layer" in mlp
    assert "<td>3.0 %</td>" in mlp and "<td>50.0 %</td>" in mlp  # val error column
    assert count_imgs(mlp) == 2  # loss vs depth, gradient norms

    # dropout: the best rate of each kind.
    assert ("Lowest validation loss: with residual connections at dropout 0.1 (1.45 nats/char); without (plain) at "
            "dropout 0.3 (2.01 nats/char).") in dropout
    assert "That is different rates; the best residual net is 0.56 lower." in dropout
    assert "<td>2.01</td>" in dropout and "<td>—</td>" in dropout
    assert count_imgs(dropout) == 1  # both heat maps in one figure

    # family: incomplete, ranked by val error, the unfinished model listed with dashes.
    assert 'class="warning"' in family and "not complete" in family
    assert ("Validation error, lowest first: resnet20 (residual) 6.1 %, highway20 (highway) 7.2 %, "
            "plain20 (plain) 9.4 %.") in family
    assert "Not finished: densenet_bc40." in family
    assert "<td>272,474</td>" in family and "<td>densenet_bc40</td>" in family
    assert count_imgs(family) == 1
    assert count_imgs(html) == 8
    assert all(png.startswith("iVBORw0KGgo") for png in re.findall(r'src="data:image/png;base64,([^"]+)"', html))


def test_plain_winning_and_a_tie_are_said_honestly(tmp_path):
    write_summary(tmp_path / "plainwins", "transformer", "depth", transformer_records(2.45, 1.23))
    html = beyond_cnns.build([], [tmp_path / "plainwins"])
    assert ("At depth 8, the plain transformer reached a lower training loss than its residual twin: "
            "1.23 nats/char against 2.45 (1.22 lower).") in html
    assert "the residual transformer reached" not in html
    write_summary(tmp_path / "tie", "transformer", "depth", transformer_records(1.500, 1.510))
    html = beyond_cnns.build([], [tmp_path / "tie"])
    assert "the residual and plain transformers reached about the same training loss" in html


def test_missing_fields_and_empty_files_do_not_crash(tmp_path):
    bare = [{"name": "a", "model": "transformer4", "variant": "residual", "residual": True, "depth": 4,
             "final_train_loss": None, "final_val_loss": float("nan")},
            {"name": "b", "model": "plain4", "variant": "plain", "residual": False, "depth": None,
             "final_train_loss": 1.0, "final_val_loss": None, "curves": None, "rank_collapse": {"layers": [0]},
             "gradient_norms": {"norms": [0.0, None]}}]
    for name, axis in (("transformer", "depth"), ("rnn", "depth"), ("mlp", "depth"), ("dropout", "dropout"),
                       ("family", "model")):
        write_summary(tmp_path / name, name, axis, bare, complete=False)
    write_summary(tmp_path / "empty", "transformer", "depth", [], complete=False)
    dirs = [tmp_path / n for n in ("transformer", "rnn", "mlp", "dropout", "family", "empty")]
    html = beyond_cnns.build([], dirs)
    assert html.count('<div class="subsection">') == 6
    assert "No depth has both a residual and a plain transformer with a final training loss yet." in html
    assert "No run of this experiment has been recorded yet." in html
    assert "No run of the grid has a final validation loss yet." in html
    assert "NaN" not in html and "nan" not in html.replace("nats", "")
    assert beyond_cnns.build([], [tmp_path / "nothing-here"]) is None


def test_whole_report_and_cli_from_summary_only_directories(sweeps, tmp_path, capsys):
    runs, experiments = collect_dirs([sweeps["transformer"].parent])  # a folder of experiment directories
    assert runs == [] and set(experiments) == set(sweeps.values())
    output = tmp_path / "report.html"
    result = build_report([sweeps["transformer"], sweeps["dropout"]], output)
    assert result.warnings == [] and result.sections == [beyond_cnns.TITLE]
    html = output.read_text(encoding="utf-8")
    assert 'href="#beyond-cnns"' in html and count_imgs(html) == 4
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(sweeps["transformer"].parent), "-o", str(tmp_path / "cli.html")])
    assert exit_info.value.code == 0
    assert count_imgs((tmp_path / "cli.html").read_text(encoding="utf-8")) == 8
