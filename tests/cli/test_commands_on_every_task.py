"""predict, eval, the analyses and finetune on segmentation and language-model runs: each works
(with the task's own measures) or refuses in one line naming the task and what to use instead.

The runs are made through the CLI with tiny settings, so these tests hold whatever engine trains them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli.main import main
from reslab.data.segmentation import load_segmentation
from reslab.store.rundir import read_metrics
from reslab.train.loading import load_run

SHAPES = ["--set", "data_options.num_train=16", "--set", "data_options.num_test=8", "--set",
          "data_options.image_size=16"]


def quiet_main(argv) -> None:
    """Run the CLI for a fixture (no capsys at module scope); a failure shows what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None), err.getvalue() + out.getvalue()


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_refusal(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One finished run of each task: a U-Net on generated shapes, one on a segfolder, a character
    transformer, and a classifier (for the flags other tasks refuse)."""
    root = tmp_path_factory.mktemp("task_runs")
    common = ["--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]
    quiet_main(["train", "unet_resnet20", "--task", "segment", "--data", "shapes", *SHAPES, "--batch-size", "8",
                *common, "--out", str(root / "shapes")])
    folder = root / "my_segfolder"
    data = load_segmentation("shapes", num_train=12, num_test=4, image_size=16)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, (image, mask) in enumerate(zip(data.train_images, data.train_masks)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "images" / f"{i}.png")
        Image.fromarray(mask.numpy().astype("uint8"), mode="L").save(folder / "masks" / f"{i}.png")
    quiet_main(["train", "unet_resnet20", "--task", "segment", "--data", f"segfolder:{folder}", "--batch-size", "4",
                "--set", "data_options.val_fraction=0.34", *common, "--out", str(root / "segfolder")])
    quiet_main(["train", "transformer2", "--data", "text", "--set", "data_options.max_chars=3000", "--set",
                "data_options.context=16", "--set", "model_options.width=16", *common, "--out", str(root / "text")])
    quiet_main(["train", "resmlp5", "--data", "synthetic", "--set", "data_options.num_train=64", "--set",
                "data_options.num_test=16", "--set", "data_options.image_size=8", "--batch-size", "16", *common,
                "--out", str(root / "classifier")])
    images = root / "images"
    images.mkdir()
    for i, image in enumerate(data.test_images[:2]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(images / f"shape{i}.png")
    # Another size than the run's: the mask must come back at the image's own size.
    Image.fromarray(data.test_images[2].permute(1, 2, 0).numpy()).resize((24, 20)).save(images / "wide.png")
    return {name: root / name for name in ("shapes", "segfolder", "text", "classifier", "images")}


def test_load_run_builds_the_model_and_data_of_every_task(runs):
    segmenter = load_run(runs["shapes"])
    assert segmenter.task == "segment"
    assert segmenter.model(torch.zeros(2, 3, 16, 16)).shape == (2, 4, 16, 16)
    assert segmenter.dataset.test_masks.shape == (8, 16, 16)
    folder = load_run(runs["segfolder"])
    assert folder.task == "segment" and folder.dataset.num_train + folder.dataset.num_test == 12
    language_model = load_run(runs["text"])
    config = json.loads((runs["text"] / "config.json").read_text())
    assert language_model.task == "language-model"
    assert language_model.class_names == config["class_names"]
    text = language_model.dataset
    assert text.vocab == config["class_names"]
    assert language_model.model(text.test_tokens[None, :16]).shape == (1, 16, len(config["class_names"]))


@pytest.mark.parametrize("run", ["shapes", "segfolder"])
def test_eval_of_a_segmentation_run_gives_the_trainers_test_scores(runs, run, capsys):
    code, out, err = run_cli(["eval", runs[run], "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    last = read_metrics(runs[run])[-1]
    assert result["task"] == "segment"
    assert result["miou"] == pytest.approx(last["test_miou"], abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(last["test_pixel_accuracy"], abs=1e-6)
    assert result["loss"] == pytest.approx(last["test_loss"], rel=1e-4)
    assert set(result["iou"]) == set(load_run(runs[run]).class_names)
    code, out, _ = run_cli(["eval", runs[run], "--device", "cpu"], capsys)
    assert code == 0 and "mIoU" in out and "pixel accuracy" in out and "IoU per class" in out


def test_eval_of_a_language_model_gives_nats_and_bits_per_character(runs, capsys):
    code, out, err = run_cli(["eval", runs["text"], "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["loss"] == pytest.approx(read_metrics(runs["text"])[-1]["test_loss"], rel=1e-4)
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))
    code, out, _ = run_cli(["eval", runs["text"], "--device", "cpu"], capsys)
    assert code == 0 and "nats/char" in out and "bits/char" in out


def test_predict_on_a_segmentation_run_writes_class_index_masks_at_each_images_size(runs, tmp_path, capsys):
    masks = tmp_path / "masks"
    code, out, err = run_cli(["predict", runs["shapes"], runs["images"], "--masks", masks, "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["mask"]).name for r in rows] == ["shape0.png", "shape1.png", "wide.png"]
    for row in rows:
        assert sum(row["class_fractions"].values()) == pytest.approx(1.0)
        with Image.open(row["mask"]) as mask, Image.open(row["image"]) as image:
            assert mask.mode == "P" and mask.size == image.size
            values = torch.from_numpy(np.array(mask)).long().flatten()
        assert int(values.max()) < 4
        shares = torch.bincount(values, minlength=4).double() / values.numel()
        assert shares.tolist() == pytest.approx(list(row["class_fractions"].values()))
    code, _, err = run_cli(["predict", runs["shapes"], runs["images"], "--masks", masks], capsys)
    assert_one_line_refusal(code, err, "shape0.png", "--force")
    code, out, _ = run_cli(["predict", runs["shapes"], runs["images"], "--masks", masks, "--force"], capsys)
    assert code == 0 and "background" in out


def test_predict_on_a_language_model_continues_the_prompt(runs, capsys):
    code, out, err = run_cli(["predict", runs["text"], "the ", "--chars", "30"], capsys)
    assert code == 0, err
    greedy = out.rstrip("\n")
    assert greedy.startswith("the ") and len(greedy) == len("the ") + 30
    sampled = [run_cli(["predict", runs["text"], "the ", "--chars", "30", "--temperature", "1", "--seed", "3",
                        "--json"], capsys)[1] for _ in range(2)]
    assert sampled[0] == sampled[1]
    assert len(json.loads(sampled[0])["continuation"]) == 30
    code, _, err = run_cli(["predict", runs["text"], "th\u00e9"], capsys)
    assert_one_line_refusal(code, err, "never saw", "\u00e9")


@pytest.mark.parametrize("run", ["shapes", "text"])
@pytest.mark.parametrize("analysis, flags", [
    ("gradients", ["--samples", "8", "--no-classic"]),
    ("responses", ["--samples", "8"]),
    ("lesion", ["--samples", "8", "--max-removed", "1"]),
    ("landscape", ["--samples", "8", "--grid=-0.5:0.5:2", "--workers", "1"]),
    ("hessian", ["--samples", "8", "--top-k", "1", "--max-iterations", "5"]),
])
def test_every_analysis_measures_segmentation_and_language_model_runs(runs, run, analysis, flags, tmp_path, capsys):
    code, out, err = run_cli(["analyze", analysis, runs[run], *flags, "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    assert "wrote" in out
    if analysis == "hessian":
        # Its loss is the per-pixel (per-character) cross-entropy on the 8 samples: a few nats.
        loss = json.loads((tmp_path / "hessian.json").read_text())["loss"]
        assert 0 < loss < 10


@pytest.mark.parametrize("argv, words", [
    (["finetune", "{shapes}", "--data", "digits"], ["segmenter", "reslab train --resume"]),
    (["finetune", "{text}", "--data", "digits"], ["language model", "reslab train --resume"]),
    (["finetune", "{classifier}", "--data", "shapes"], ["segmentation data", "reslab train unet_"]),
    (["predict", "{classifier}", "{images}", "--masks", "out"], ["--masks", "segmenter", "classifier"]),
    (["predict", "{shapes}", "{images}", "--fast"], ["--fast", "segmenter"]),
    (["predict", "{text}", "hello", "--csv", "x.csv"], ["--csv", "language model"]),
    (["analyze", "gradients", "{text}", "--shattered", "--no-classic"], ["--shattered", "language model"]),
    (["eval", "{shapes}", "--data", "digits"], ["labelled images", "segmenter"]),
    (["bench", "infer", "{text}", "--paths", "bn-fold"], ["language model", "eager, compile, ort-fp32"]),
])
def test_what_a_task_cannot_do_is_refused_in_one_line_naming_the_task(runs, argv, words, capsys):
    code, _, err = run_cli([part.format(**runs) for part in argv], capsys)
    assert_one_line_refusal(code, err, *words)
