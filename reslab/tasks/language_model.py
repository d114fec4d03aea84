"""``language-model``: predict each next character of a text (transformers, LSTM/GRU stacks, with
and without skips).

Data: a character corpus (``--data text``: Python's help topics, or your own UTF-8 file) as int64
tokens on the device, cut into windows of ``context`` characters (:class:`~reslab.data.SequenceLoader`).
Metrics: cross-entropy per character in nats and bits, and the next-character error.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from reslab.data import SequenceLoader, load_dataset
from reslab.errors import ConfigError
from reslab.models import model_info
from reslab.tasks.base import Task, register_task
from reslab.tasks.common import check_batch, sized_model


def is_text_data(data: str) -> bool:
    return str(data).lower() == "text"


class LanguageModel(Task):
    name = "language-model"
    description = "the next character of a text: nats and bits per character"
    unit = ("characters", "char")
    unused = {"crop_padding": 0, "flip": False, "cutout": 0, "test_flip": False}
    exclusive = True

    def claims(self, model: str, data: str) -> bool:
        if is_text_data(data):
            return True
        try:
            return model_info(model).family == "sequence"
        except Exception:  # noqa: BLE001 - an unknown name: building the model says what is wrong
            return False

    def default_recipe(self, data: str) -> str:
        return "text-char"

    def augment(self, config) -> str:
        return "none (windows at random offsets)"

    def load_data(self, config, *, download: bool = False, progress: bool = True):
        if not is_text_data(config.data):
            raise ConfigError(f"{config.model} is a language model; it trains on text: --data text (Python's help "
                              f"topics) or --data text --data-dir YOUR_FILE.txt, not {config.data!r}")
        return load_dataset(config.data, data_dir=config.data_dir, download=download, progress=progress,
                            **config.data_options)

    def build_model(self, config, dataset) -> nn.Module:
        if model_info(config.model).family != "sequence":
            raise ConfigError(f"dataset {dataset.name!r} is text, but model {config.model!r} reads images; use a "
                              "sequence model (transformer{d}, plain_transformer{d}, lstm{d}, gru{d}, ...)")
        return sized_model(config.model, dataset.num_classes, dataset.in_chans, None, config.model_options)

    def num_train(self, dataset) -> int | None:
        return None  # windows at random offsets: any batch size fits

    def check(self, config, model: nn.Module, dataset) -> None:
        check_batch(config.batch_size, config.accumulate, 1, None, config.data)
        model_context = getattr(model, "model_options", {}).get("context")
        if model_context is not None and dataset.context > model_context:
            raise ConfigError(f"the data's windows ({dataset.context} characters) are longer than model "
                              f"{config.model!r} accepts (context {model_context}); use --data-option "
                              f"context={model_context} or --model-option context={dataset.context}")

    def loaders(self, config, dataset, *, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1):
        check_batch(config.batch_size, config.accumulate, world_size, None, config.data)
        train = SequenceLoader(dataset.train_tokens, batch_size, dataset.context, device, train=True,
                               seed=config.seed, rank=rank, world_size=world_size)
        test = SequenceLoader(dataset.test_tokens, config.eval_batch_size, dataset.context, device, train=False,
                              rank=rank, world_size=world_size)
        return train, test

    def test_metrics(self, sums: torch.Tensor, prefix: str = "test") -> dict[str, Any]:
        metrics = super().test_metrics(sums, prefix)
        loss = metrics[f"{prefix}_loss"]
        metrics[f"{prefix}_bits_per_char"] = loss / math.log(2) if loss is not None and math.isfinite(loss) else None
        return metrics

    def epoch_parts(self, record: Mapping[str, Any]) -> list[str]:
        parts = [f"train loss {record['train_loss']:.4f} nats/char ({record['train_loss'] / math.log(2):.3f} bits) "
                 f"error {100 * record['train_error']:.2f}%"]
        if record.get("test_error") is not None:
            parts.append(f"val loss {record['test_loss']:.4f} nats/char ({record['test_loss'] / math.log(2):.3f} "
                         f"bits) error {100 * record['test_error']:.2f}%")
        return parts

    def summary_parts(self, last: Mapping[str, Any]) -> list[str]:
        if last.get("test_loss") is None:
            return ["no validation text"]
        return [f"validation loss {last['test_loss']:.4f} nats/char ({last['test_loss'] / math.log(2):.3f} bits/char), "
                f"next-character accuracy {100 * (1 - last['test_error']):.2f}%"]

    def facts(self, dataset, model: nn.Module) -> dict[str, Any]:
        return {"class_names": list(dataset.class_names), "context": dataset.context}


register_task(LanguageModel)
