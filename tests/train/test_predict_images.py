"""`predict` reads images exactly as training does, says how it converted them, and takes folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli.main import main
from reslab.train import load_run, predict, resolve_config, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    train(resolve_config("digits-quick", model="cifar_resnet8", overrides={
        "out": str(out), "epochs": 1, "batch_size": 16, "data": "synthetic", "quiet": True, "threads": 1,
        "data_options": {"num_train": 32, "num_test": 16, "image_size": 8, "channels": 1, "num_classes": 3}}))
    return out


def same(a, b) -> bool:
    """The same ranking and probabilities (to float rounding: batches of other sizes)."""
    return [k for k, _, _ in a] == [k for k, _, _ in b] and [p for _, _, p in a] == pytest.approx([p for _, _, p in b],
                                                                                             abs=1e-6)


def _images(folder, pixels: np.ndarray) -> None:
    folder.mkdir()
    Image.fromarray(pixels, mode="L").save(folder / "a_gray.png")
    sixteen = Image.new("I;16", (8, 8))
    sixteen.frombytes((pixels.astype("<u2") * 257).tobytes())
    sixteen.save(folder / "b_16bit.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = pixels[..., None], 255
    rgba[:3, :, :3], rgba[:3, :, 3] = 255, 0  # transparent white rows: over black they are black
    Image.fromarray(rgba, mode="RGBA").save(folder / "c_rgba.png")
    Image.fromarray(pixels, mode="L").resize((24, 24)).convert("RGB").save(folder / "d_big_colour.png")


def test_sixteen_bit_alpha_size_and_colour_follow_the_training_reader(run_dir, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    _images(tmp_path / "imgs", pixels)
    run = load_run(run_dir)
    by_name = {p.source.rsplit("/", 1)[-1]: p for p in predict(run, [tmp_path / "imgs"], top_k=3)}
    assert list(by_name) == ["a_gray.png", "b_16bit.png", "c_rgba.png", "d_big_colour.png"]  # a folder: every image
    assert same(by_name["b_16bit.png"].top, by_name["a_gray.png"].top)  # 16-bit scaled by 1/257, as for training
    assert by_name["b_16bit.png"].notes == ["16-bit scaled to 8-bit (÷257)"] and by_name["a_gray.png"].notes == []
    blacked = pixels.copy()
    blacked[:3] = 0
    assert same(by_name["c_rgba.png"].top, predict(run, torch.from_numpy(blacked[None, None].copy()), top_k=3)[0].top)
    assert "transparency composited over black" in by_name["c_rgba.png"].notes
    assert by_name["d_big_colour.png"].notes == ["colour converted to grayscale", "resized 24×24 → 8×8"]


def test_cli_predicts_a_folder_into_a_csv_and_names_what_is_wrong(run_dir, tmp_path, capsys):
    _images(tmp_path / "imgs", np.full((8, 8), 120, np.uint8))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(tmp_path / "imgs"), "--top-k", "2", "--csv", str(tmp_path / "p.csv")])
    out = capsys.readouterr()
    assert exit_info.value.code == 0 and "[16-bit scaled to 8-bit (÷257)]" in out.out
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 8 and rows[0]["rank"] == "1" and rows[-1]["conversions"].endswith("resized 24×24 → 8×8")
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "empty", "holds no PNG/JPEG images"), (tmp_path / "nope.png", "does not exist")):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", str(run_dir), str(target)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and message in err[0], err


def test_predict_csv_refuses_an_existing_file_unless_force_and_json_keeps_stdout_json(run_dir, tmp_path, capsys):
    _images(tmp_path / "imgs", np.full((8, 8), 60, np.uint8))
    table = tmp_path / "p.csv"
    table.write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(tmp_path / "imgs"), "--csv", str(table)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "the file exists; pass --force to replace it" in err[0]
    assert table.read_text() == "mine"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(run_dir), str(tmp_path / "imgs"), "--csv", str(table), "--force", "--json"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0 and f"wrote {table}" in captured.err
    assert [json.loads(line)["image"].rsplit("/", 1)[-1] for line in captured.out.splitlines()] == [
        "a_gray.png", "b_16bit.png", "c_rgba.png", "d_big_colour.png"]  # stdout: JSON lines only
    assert len(list(csv.DictReader(table.open()))) == 4 * 3
