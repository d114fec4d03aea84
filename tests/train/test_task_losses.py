"""One loss and one error count for every task's outputs, and text renumbered into a model's vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reslab.data.text import TextDataset
from reslab.errors import DatasetError
from reslab.train.evaluation import flat_outputs, task_cross_entropy
from reslab.train.loading import text_in_vocabulary


def test_segmenter_logits_keep_each_pixels_classes_together():
    # 4 classes over a 4x4 image: as many classes as rows, the case a layout guess by shape gets wrong.
    logits, masks = torch.randn(2, 4, 4, 4), torch.randint(0, 4, (2, 4, 4))
    flat, labels = flat_outputs(logits, masks)
    assert flat.shape == (32, 4)
    assert torch.equal(flat.argmax(1), logits.argmax(1).reshape(-1))
    assert task_cross_entropy(logits, masks) == pytest.approx(float(F.cross_entropy(logits, masks)), rel=1e-6)


def test_sequence_and_classifier_losses_are_the_mean_per_token_and_per_image():
    tokens, targets = torch.randn(3, 5, 7), torch.randint(0, 7, (3, 5))
    expected = F.cross_entropy(tokens.reshape(15, 7), targets.reshape(15))
    assert task_cross_entropy(tokens, targets) == pytest.approx(float(expected), rel=1e-6)
    images, labels = torch.randn(4, 10), torch.randint(0, 10, (4,))
    assert task_cross_entropy(images, labels, "sum") == pytest.approx(float(F.cross_entropy(images, labels,
                                                                                              reduction="sum")))


def text(chars: str) -> TextDataset:
    vocab = sorted(set(chars))
    encode = lambda part: torch.tensor([vocab.index(c) for c in part])  # noqa: E731
    return TextDataset(encode(chars[:6]), encode(chars[6:]), vocab, "text", "test")


def test_text_is_renumbered_into_the_models_vocabulary_or_refused():
    data = text("abcabcba")
    model_vocabulary = ["c", "x", "b", "a"]
    renumbered = text_in_vocabulary(data, model_vocabulary)
    assert "".join(model_vocabulary[t] for t in renumbered.train_tokens) == "abcabc"
    assert "".join(model_vocabulary[t] for t in renumbered.test_tokens) == "ba"
    with pytest.raises(DatasetError, match="never saw"):
        text_in_vocabulary(data, ["a", "b"])
