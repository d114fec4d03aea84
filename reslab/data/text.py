"""Character-level text: the corpus that ships with Python itself, or the user's own file.

The default corpus is the standard library's ``pydoc_data/topics.py``: the help topics of
Python's documentation (≈ 465,000 characters of English prose and code; every Python install has
it, so nothing is downloaded). The topics are joined in sorted order with a blank line between
them; the first ``1 - val_fraction`` of the characters train, the rest (by position) validate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reslab.data.registry import register_dataset
from reslab.errors import DatasetError

DEFAULT_SOURCE = "Python's standard library pydoc_data/topics.py (documentation help topics)"


def python_topics_text() -> str:
    """The text of ``pydoc_data.topics``: every topic, sorted by name, joined by blank lines."""
    try:
        from pydoc_data.topics import topics  # noqa: PLC0415 - only this corpus needs it
    except ImportError:  # a stripped-down Python without pydoc_data
        raise DatasetError("this Python has no pydoc_data module (the default text corpus); "
                           "pass your own text with --data-dir FILE (dataset 'text')") from None
    return "\n\n".join(topics[name] for name in sorted(topics))


@dataclass
class TextDataset:
    """A character-level corpus as int64 token ids, split by position.

    ``train_tokens``/``test_tokens`` (int64 (N,)) index ``vocab`` (one character per class, sorted);
    ``context`` is the length of the windows the loader cuts. ``class_names`` is the vocabulary,
    so a run's config records it like an image dataset's class names.
    """

    train_tokens: torch.Tensor
    test_tokens: torch.Tensor
    vocab: list[str]
    name: str
    source: str
    context: int = 128
    options: dict[str, Any] = field(default_factory=dict)
    kind = "text"
    in_chans = 1
    image_size = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def class_names(self) -> list[str]:
        return list(self.vocab)

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    @property
    def num_train(self) -> int:
        return int(self.train_tokens.numel())

    @property
    def num_test(self) -> int:
        return int(self.test_tokens.numel())

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.vocab)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise DatasetError(f"characters {unknown[:5]!r} are not in the vocabulary of {self.name!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, tokens) -> str:
        return "".join(self.vocab[int(t)] for t in tokens)

    def describe(self) -> str:
        return (f"{self.name}: {self.num_train:,} train / {self.num_test:,} validation characters, "
                f"{self.num_classes} distinct, windows of {self.context}, from {self.source}")

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "options": dict(self.options),
                "num_train": self.num_train, "num_test": self.num_test, "num_classes": self.num_classes,
                "context": self.context, "class_names": list(self.vocab)}


def _number(kind, name: str, value):
    """``value`` as an int or float, or one DatasetError naming the option."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        expected = "a whole number" if kind is int else "a number"
        raise DatasetError(f"dataset 'text': option {name}={value!r} must be {expected}") from None


def load(data_dir: str | Path | None = None, download: bool = False, *, file: str | Path | None = None,
         context: int = 128, val_fraction: float = 0.1, max_chars: int | None = None, **unknown) -> TextDataset:
    """The character corpus: Python's help topics, or the UTF-8 text ``file`` (also given as ``data_dir``).

    context: window length for training and validation; val_fraction: the last part of the text
    (by position) that validates; max_chars: use only the first characters (quick runs).
    """
    del download  # nothing to download: the corpus ships with Python or is the user's file
    if unknown:
        raise DatasetError(f"dataset 'text' does not take option(s) {', '.join(sorted(unknown))}; valid options: "
                           "file, context, val_fraction, max_chars (e.g. --data-option context=64)")
    path = file if file is not None else data_dir
    if path is not None:
        given = "file" if file is not None else "--data-dir"
        path = Path(path).expanduser()
        if path.is_dir():
            raise DatasetError(f"dataset 'text': {given} {str(path)!r} is a directory, expected a text file; give one "
                               "UTF-8 file (e.g. --data-dir corpus.txt), or leave it out for Python's own help topics")
        if not path.is_file():
            raise DatasetError(f"dataset 'text': {given} {str(path)!r}: text file not found; give one UTF-8 file (e.g. "
                               "--data-dir corpus.txt), or leave it out for Python's own help topics")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        source = str(path.resolve())
    else:
        text, source = python_topics_text(), DEFAULT_SOURCE
    if max_chars is not None:
        max_chars = _number(int, "max_chars", max_chars)
        if max_chars < 1:
            raise DatasetError(f"dataset 'text': max_chars must be positive, got {max_chars}")
        text = text[:max_chars]
    context, val_fraction = _number(int, "context", context), _number(float, "val_fraction", val_fraction)
    if context < 2:
        raise DatasetError(f"context must be at least 2 characters, got {context}")
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    split = int(round(len(text) * (1.0 - val_fraction)))
    train_text, val_text = text[:split], text[split:]
    for part, what in ((train_text, "training"), (val_text, "validation")):
        if len(part) < context + 1:
            raise DatasetError(f"the {what} part of {source} has {len(part)} characters, fewer than one window "
                               f"of context {context} + 1; use a longer text or a smaller context")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    encode = lambda part: torch.tensor([index[c] for c in part], dtype=torch.int64)  # noqa: E731
    options = {"context": context, "val_fraction": val_fraction}
    if max_chars is not None:
        options["max_chars"] = int(max_chars)
    if file is not None:
        options["file"] = str(file)
    return TextDataset(encode(train_text), encode(val_text), vocab, "text", source, context, options)


class SequenceLoader:
    """Batches of (x, y) windows of a token stream, on the device: y is x shifted by one.

    Training: each batch holds ``batch_size`` windows at random offsets drawn from (seed, epoch),
    and an epoch has as many batches as it takes to draw about as many characters as the split
    holds. Evaluation: the split cut into consecutive non-overlapping windows (the tail shorter
    than one window is left out), in order. With ``world_size`` ranks, rank r takes every
    world_size-th window of each global batch.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, context: int, device: str | torch.device = "cpu",
                 train: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if tokens.ndim != 1 or tokens.dtype != torch.int64:
            raise DatasetError(f"tokens must be int64 (N,), got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() < context + 1:
            raise DatasetError(f"{tokens.numel()} tokens are fewer than one window of {context} + 1")
        self.device = torch.device(device)
        self.tokens = tokens.to(self.device)
        self.batch_size, self.context, self.train = int(batch_size), int(context), bool(train)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch = 0
        self.dataset_size = int(tokens.numel())
        windows = (self.dataset_size - 1) // self.context
        if self.train:
            self._num_batches = max(1, windows // (self.batch_size * self.world_size))
        else:
            starts = torch.arange(0, windows * self.context, self.context)
            self._starts = starts[self.rank::self.world_size]
            self._num_batches = -(-len(self._starts) // self.batch_size)
        self._offsets = torch.arange(self.context + 1, device=self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def _windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.tokens[starts.to(self.device)[:, None] + self._offsets]
        return chunk[:, :-1], chunk[:, 1:]

    def __iter__(self):
        if not self.train:
            for i in range(self._num_batches):
                yield self._windows(self._starts[i * self.batch_size:(i + 1) * self.batch_size])
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        high = self.dataset_size - self.context
        for _ in range(self._num_batches):
            starts = torch.randint(0, high, (self.batch_size * self.world_size,), generator=generator)
            yield self._windows(starts[self.rank::self.world_size])

    def __repr__(self) -> str:
        return (f"SequenceLoader({self.dataset_size} tokens, batch {self.batch_size}, context {self.context}, "
                f"{'train' if self.train else 'eval'}, {len(self)} batches)")


register_dataset("text", load, task="language", description="characters of a UTF-8 text (default: Python's help topics)")
