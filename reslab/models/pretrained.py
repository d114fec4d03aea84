"""Weights that ship inside the package: ``create_model("resnet20", pretrained="cifar10")``.

torchvision and timm ship no CIFAR weights, so reslab carries a few small ones (ResNet-20 is
0.27 M parameters, 1.1 MB as safetensors) made by its own recipes. Each file holds, in its
safetensors header, the record of how it was made (recipe, seed, epochs, measured test
accuracy, versions, the command) and what the network expects (classes, mean/std, image size).
Nothing is ever downloaded: the files are package data, read from disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from reslab.errors import ModelConfigError

WEIGHTS_DIR = Path(__file__).parent / "weights"
METADATA_KEY = "reslab_pretrained"

# (model name, tag) -> file in WEIGHTS_DIR. A new entry is made by scripts/ship_pretrained.py.
_SHIPPED: dict[tuple[str, str], str] = {
    ("resnet20", "cifar10"): "resnet20-cifar10.safetensors",
}


@dataclass(frozen=True)
class PretrainedWeights:
    """One shipped weight file and its record (``metadata``: the JSON written when it was made)."""

    model: str
    tag: str
    path: Path
    metadata: dict[str, Any]

    @property
    def test_accuracy(self) -> float | None:
        return self.metadata.get("test_accuracy")

    def describe(self) -> str:
        meta = self.metadata
        parts = [f"{self.model} pretrained={self.tag!r}"]
        if meta.get("test_accuracy") is not None:
            parts.append(f"test accuracy {100 * meta['test_accuracy']:.2f}%")
        if meta.get("test_accuracy_flip") is not None:
            parts.append(f"{100 * meta['test_accuracy_flip']:.2f}% with test-time flips")
        if meta.get("recipe"):
            parts.append(f"recipe {meta['recipe']}, {meta.get('epochs')} epochs, seed {meta.get('seed')}")
        return ", ".join(parts)


def list_pretrained() -> list[PretrainedWeights]:
    """Every shipped weight file with its record, sorted by model then tag."""
    return [pretrained_weights(model, tag) for model, tag in sorted(_SHIPPED)]


def pretrained_tags(model: str) -> list[str]:
    return sorted(tag for name, tag in _SHIPPED if name == model)


def pretrained_weights(model: str, tag: str | bool = True) -> PretrainedWeights:
    """The shipped weights of ``model`` called ``tag`` (``True``: the model's only tag).

    Raises:
        ModelConfigError: the model has no shipped weights, or none with this tag (the error
            lists what exists).
    """
    tags = pretrained_tags(model)
    if not tags:
        shipped = ", ".join(f"{name} (pretrained={tag!r})" for name, tag in sorted(_SHIPPED))
        raise ModelConfigError(
            f"{model}: reslab ships no pretrained weights for this model and downloads none. Shipped: {shipped}. "
            "To start from weights on disk: model.load_state_dict(torch.load('x.pth')) (a torchvision state dict "
            "loads unchanged into the ImageNet names); a reslab run's weights: reslab.train.load_run(RUN_DIR)")
    if tag is True:
        if len(tags) > 1:
            raise ModelConfigError(f"{model}: several pretrained weights ship ({', '.join(tags)}); "
                                   f"name one, e.g. pretrained={tags[0]!r}")
        tag = tags[0]
    if not isinstance(tag, str) or (model, tag) not in _SHIPPED:
        raise ModelConfigError(f"{model}: no pretrained weights called {tag!r}; shipped for {model}: "
                               f"{', '.join(repr(t) for t in tags)}")
    path = WEIGHTS_DIR / _SHIPPED[(model, tag)]
    return PretrainedWeights(model, tag, path, _read_metadata(str(path)))


@lru_cache(maxsize=None)
def _read_metadata(path: str) -> dict[str, Any]:
    from safetensors import safe_open

    if not Path(path).is_file():
        raise ModelConfigError(f"the pretrained weight file {path} is missing from this installation; "
                               "reinstall reslab (the file is package data)")
    with safe_open(path, framework="pt") as handle:
        header = handle.metadata() or {}
    return json.loads(header.get(METADATA_KEY, "{}"))


def load_pretrained(model: nn.Module, weights: PretrainedWeights) -> nn.Module:
    """Copy ``weights`` into ``model`` (built with the same architecture) and attach
    ``model.pretrained_cfg`` (timm's name: classes, mean, std, input size, the record)."""
    from safetensors.torch import load_file

    state = load_file(str(weights.path))
    own = model.state_dict()
    for key, tensor in state.items():
        if key not in own:
            raise ModelConfigError(f"{weights.model} pretrained={weights.tag!r}: the weights have {key!r}, which the "
                                   "model built with these options lacks; build it with the defaults")
        if own[key].shape != tensor.shape:
            raise ModelConfigError(
                f"{weights.model} pretrained={weights.tag!r}: {key} is {tuple(tensor.shape)} in the weights but "
                f"{tuple(own[key].shape)} in the model; pretrained weights need the architecture they were made "
                "with (to change the classes, load them with the default head and then replace model.fc)")
    missing = sorted(set(own) - set(state))
    if missing:
        raise ModelConfigError(f"{weights.model} pretrained={weights.tag!r}: the model built with these options has "
                               f"{missing[0]!r} (and {len(missing) - 1} more) that the weights lack; build it with "
                               "the defaults")
    model.load_state_dict(state)
    meta = weights.metadata
    model.pretrained_cfg = {
        "tag": weights.tag, "num_classes": meta.get("num_classes"), "class_names": meta.get("class_names"),
        "mean": meta.get("mean"), "std": meta.get("std"), "input_size": meta.get("input_size"),
        "record": meta,
    }
    return model.eval()


__all__ = ["PretrainedWeights", "list_pretrained", "load_pretrained", "pretrained_tags", "pretrained_weights",
           "WEIGHTS_DIR", "METADATA_KEY"]
