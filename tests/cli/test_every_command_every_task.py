"""Every command on a small run of every task: it works (and its output or files say something
real), or it refuses in one line on stderr, exit 2, that names the task. Never a traceback.

The four runs (an image classifier, a vector MLP, a U-Net segmenter, a character transformer) are
made once for the module through ``reslab train`` with tiny settings. Commands that write into a
run or change it (``train --resume``) get a copy, so the order the cells run in does not matter.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
from PIL import Image

from reslab.cli.main import main
from reslab.store.rundir import read_metrics

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TASKS = ("classify-image", "classify-vector", "segment", "language-model")

# What a one-line refusal must say so that a user sees which kind of run it was about.
TASK_WORDS = {
    "classify-image": ("classif",),
    "classify-vector": ("classif", "vector", "MLP"),
    "segment": ("segment", "U-Net"),
    "language-model": ("language model", "text"),
}

QUIET = ["--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]
TRAIN = {
    "classify-image": ["cifar_resnet8", "--data", "digits"],
    "classify-vector": ["resmlp5", "--data", "digits"],
    "segment": ["unet_cifar_resnet8", "--data", "shapes", "--data-option", "num_train=32", "--data-option",
                "num_test=8", "--data-option", "image_size=16"],
    "language-model": ["transformer2", "--data", "text", "--data-dir", "{text}", "--data-option", "context=16",
                       "--model-option", "width=16"],
}

WORDS = "the quick brown fox jumps over a lazy dog while residual networks learn identity maps".split()


def _quiet_main(argv) -> None:
    """Run the CLI for the fixture (no capsys at module scope); a failure shows what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None), err.getvalue() + out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("every_task")
    text = root / "small.txt"
    text.write_text(" ".join(WORDS[(i * 7 + i // 5) % len(WORDS)] for i in range(400)))
    for task, argv in TRAIN.items():
        _quiet_main(["train"] + [part.format(text=text) for part in argv] + QUIET + ["--out", str(root / task)])
    image = root / "image.png"
    Image.new("RGB", (20, 16), (200, 30, 30)).save(image)
    return {**{task: root / task for task in TASKS}, "image": image, "root": root}


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def _refused_naming_the_task(task, code, err) -> bool:
    """True for a one-line refusal naming the task; fails the cell for any other failure."""
    assert "Traceback" not in err, err
    if code == 0:
        return False
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, f"exit {code}: {err}"
    assert any(word in lines[0] for word in TASK_WORDS[task]), lines[0]
    return True


def _argv(command, task, runs, tmp_path):
    """The command line of one cell: the smallest budget each command takes."""
    run = runs[task]
    lm = task == "language-model"
    return {
        "predict": ["predict", run, "the " if lm else runs["image"], *(["--chars", "8"] if lm else ["--json"])],
        "eval": ["eval", run, "--device", "cpu", "--json"],
        "analyze gradients": ["analyze", "gradients", run, "--samples", "8", "--no-classic", "--out", tmp_path,
                              "--quiet"],
        "analyze responses": ["analyze", "responses", run, "--samples", "8", "--out", tmp_path, "--quiet"],
        "analyze lesion": ["analyze", "lesion", run, "--samples", "8", "--max-removed", "1", "--draws", "1",
                           "--out", tmp_path, "--quiet"],
        "analyze landscape": ["analyze", "landscape", run, "--samples", "8", "--dims", "1", "--grid=-0.5:0.5:2",
                              "--workers", "1", "--no-plots", "--out", tmp_path, "--quiet"],
        "analyze hessian": ["analyze", "hessian", run, "--samples", "8", "--top-k", "1", "--max-iterations", "3",
                            "--extreme-steps", "3", "--no-plots", "--out", tmp_path, "--quiet"],
        "export": ["export", run, "-o", tmp_path / "model.onnx"],
        # BN folding is the path that needs the model's graph; a language model has no BN to fold.
        "bench infer": ["bench", "infer", run, "--paths", "eager", *([] if lm else ["bn-fold"]), "--min-time", "0",
                        "--batch", "2", "--check-images", "4", "--threads", "1"],
        "profile": ["profile", run],
        "report": ["report", run, "-o", tmp_path / "report.html"],
        "finetune": ["finetune", run, "--data", "digits", *QUIET, "--out", tmp_path / "finetuned"],
        "train --resume": ["train", "--resume", tmp_path / "resumed", "--epochs", "2", "--quiet", "--threads",
                           "1"],
    }[command]


def _check_result(command, task, runs, out, tmp_path) -> None:
    """What a cell that worked must have printed or written."""
    lm = task == "language-model"
    if command == "predict":
        if lm:
            assert out.startswith("the ") and len(out.rstrip("\n")) == len("the ") + 8, out
        else:
            row = json.loads(out.splitlines()[0])
            assert row["image"].endswith("image.png"), row
    elif command == "eval":
        result = json.loads(out)
        assert result["loss"] == pytest.approx(read_metrics(runs[task])[-1]["test_loss"], rel=1e-3)
    elif command.startswith("analyze"):
        assert "wrote" in out, out
        assert any(path.suffix in (".json", ".npz") for path in tmp_path.iterdir()), list(tmp_path.iterdir())
    elif command == "export":
        assert (tmp_path / "model.onnx").stat().st_size > 0 and out.rstrip().endswith("OK"), out
    elif command == "bench infer":
        rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["eager"], ["bn-fold"])}
        assert set(rows) == ({"eager"} if lm else {"eager", "bn-fold"}), out
        assert all(row.rstrip().endswith("pass") for row in rows.values()), out
    elif command == "profile":
        assert "MACs" in out and "param" in out.lower(), out
    elif command == "report":
        html = (tmp_path / "report.html").read_text()
        assert html.lstrip().lower().startswith("<!doctype html") and runs[task].name in html
    elif command == "finetune":
        metrics = read_metrics(tmp_path / "finetuned")
        assert metrics and "test_loss" in metrics[-1]
    elif command == "train --resume":
        assert read_metrics(tmp_path / "resumed")[-1]["epoch"] == 2


#: The cells that refuse; every other cell works. A cell that starts or stops refusing changes this table.
REFUSED = {("finetune", "segment"), ("finetune", "language-model")}

COMMANDS = ("predict", "eval", "analyze gradients", "analyze responses", "analyze lesion", "analyze landscape",
            "analyze hessian", "export", "bench infer", "profile", "report", "finetune", "train --resume")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_works_on_every_task_or_refuses_in_one_line_naming_it(runs, command, task, tmp_path, capsys):
    if command == "train --resume":
        shutil.copytree(runs[task], tmp_path / "resumed")
    code, out, err = _cli(_argv(command, task, runs, tmp_path), capsys)
    refused = _refused_naming_the_task(task, code, err)
    assert refused == ((command, task) in REFUSED), f"exit {code}: {err}"
    if not refused:
        _check_result(command, task, runs, out, tmp_path)


@pytest.mark.parametrize("argv, task, works", [
    # BN in training mode: a last batch of one vector would stop BatchNorm1d; it joins the batch before.
    (["analyze", "gradients", "{run}", "--samples", "3", "--batch-size", "2", "--no-classic"], "classify-vector",
     True),
    (["analyze", "gradients", "{run}", "--samples", "1", "--no-classic"], "classify-vector", False),
    (["bench", "infer", "{run}", "--paths", "eager", "bn-fold", "--min-time", "0"], "language-model", False),
    # An MLP's stages are its "units": its stem is the input layer, never the new head as well.
    (["finetune", "{run}", "--data", "digits", "--freeze", "stem", *QUIET, "--out", "{out}"], "classify-vector",
     True),
])
def test_the_edges_of_a_task_work_or_are_refused_in_one_line(runs, argv, task, works, tmp_path, capsys):
    out_flags = ["--out", tmp_path, "--quiet"] if argv[0] == "analyze" else []
    code, out, err = _cli([part.format(run=runs[task], out=tmp_path / "out") for part in argv] + out_flags, capsys)
    assert _refused_naming_the_task(task, code, err) != works, err
    if works and argv[0] == "analyze":
        assert "wrote" in out
    elif works:
        assert "test accuracy" in out
