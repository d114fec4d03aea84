"""The character-level text dataset and its window loader."""

from __future__ import annotations

import pytest
import torch

from reslab.data import SequenceLoader, TextDataset, load_dataset
from reslab.errors import DatasetError


def test_default_corpus_is_pythons_help_topics_split_by_position():
    ds = load_dataset("text")
    assert isinstance(ds, TextDataset)
    total = ds.num_train + ds.num_test
    assert 400_000 < total < 2_000_000  # ≈ 465,000 characters on Python 3.11
    assert ds.num_test == pytest.approx(0.1 * total, abs=1)
    assert ds.num_classes == len(ds.vocab) == len(set(ds.vocab))
    assert ds.vocab == sorted(ds.vocab)
    assert "pydoc_data" in ds.source
    # The split is by position: the validation part continues where training stops.
    from reslab.data.text import python_topics_text

    text = python_topics_text()
    assert ds.decode(ds.train_tokens[-20:]) + ds.decode(ds.test_tokens[:20]) == text[ds.num_train - 20:ds.num_train + 20]


def test_user_file_and_options(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcabcabc" * 50, encoding="utf-8")
    ds = load_dataset("text", data_dir=path, context=8, val_fraction=0.2)
    assert ds.vocab == ["a", "b", "c"]
    assert ds.num_train == 360 and ds.num_test == 90
    assert ds.source == str(path.resolve())
    assert ds.encode("cab").tolist() == [2, 0, 1]
    assert ds.decode([0, 1, 2]) == "abc"
    with pytest.raises(DatasetError, match="not in the vocabulary"):
        ds.encode("abz")


@pytest.mark.parametrize("problem, match", [
    ("missing", "not found"), ("binary", "not UTF-8"), ("short", "fewer than one window"), ("context", "at least 2"),
])
def test_bad_text_input_is_a_clear_error(tmp_path, problem, match):
    path = tmp_path / "t.txt"
    options = {}
    if problem == "binary":
        path.write_bytes(b"\xff\xfe\x00abc" * 10)
    elif problem == "short":
        path.write_text("tiny", encoding="utf-8")
    elif problem == "context":
        path.write_text("x" * 100, encoding="utf-8")
        options["context"] = 1
    with pytest.raises(DatasetError, match=match):
        load_dataset("text", data_dir=path, **options)


def test_loader_windows_are_shifted_by_one_and_deterministic():
    tokens = torch.arange(1000, dtype=torch.int64)
    loader = SequenceLoader(tokens, batch_size=4, context=10, train=True, seed=3)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert len(loader) == (999 // 10) // 4
    again = SequenceLoader(tokens, batch_size=4, context=10, train=True, seed=3)
    assert torch.equal(next(iter(again))[0], x)
    again.set_epoch(1)
    assert not torch.equal(next(iter(again))[0], x)


def test_eval_loader_covers_the_split_in_order_and_ranks_share_it():
    tokens = torch.arange(101, dtype=torch.int64)
    loader = SequenceLoader(tokens, batch_size=3, context=10, train=False)
    windows = torch.cat([x for x, _ in loader])
    assert windows.shape == (10, 10)
    assert torch.equal(windows.reshape(-1), torch.arange(100))
    ranks = [torch.cat([x for x, _ in SequenceLoader(tokens, 3, 10, train=False, rank=r, world_size=2)])
             for r in (0, 1)]
    assert sorted(w[0].item() for r in ranks for w in r) == list(range(0, 100, 10))


def test_training_a_language_model_through_the_trainer(tmp_path):
    from reslab.errors import ConfigError
    from reslab.train import load_run, resolve_config, train

    path = tmp_path / "t.txt"
    path.write_text("to be or not to be that is the question " * 60, encoding="utf-8")
    config = resolve_config(None, model="transformer1", data="text", overrides={
        "data_dir": str(path), "data_options": {"context": 16}, "epochs": 2, "quiet": True,
        "model_options": {"width": 16, "context": 16}, "out": str(tmp_path / "run")})
    assert config.optimizer == "adamw" and config.recipe == "text-char"
    result = train(config)
    metrics = result.metrics
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["test_loss"] < 2.5  # log(13 characters) = 2.56 is chance
    loaded = load_run(tmp_path / "run")
    assert loaded.config["class_names"] == loaded.dataset.vocab and loaded.config["image_size"] is None
    with pytest.raises(ConfigError, match="reads images"):
        train(resolve_config(None, model="resnet20", data="text", overrides={
            "data_dir": str(path), "quiet": True, "out": str(tmp_path / "bad")}))
    with pytest.raises(ConfigError, match="is a language model; it trains on text"):
        train(resolve_config(None, model="lstm1", data="digits", overrides={"quiet": True,
                                                                             "out": str(tmp_path / "bad2")}))
    with pytest.raises(ConfigError, match="longer than model"):
        train(resolve_config(None, model="transformer1", data="text", overrides={
            "data_dir": str(path), "data_options": {"context": 32}, "model_options": {"context": 16},
            "quiet": True, "out": str(tmp_path / "bad3")}))
