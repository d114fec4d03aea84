"""Feature extraction with timm's conventions: ``feature_info`` and ``features_only`` models.

Every ResNet-family model carries ``model.feature_info``, one entry per place a feature map can
be taken — the stem, then each stage — with its channels, its reduction (input size / feature
size) and the name of the module that produces it::

    >>> model = reslab.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    >>> model.feature_info.channels(), model.feature_info.reduction()
    ([256, 512, 1024, 2048], [4, 8, 16, 32])
    >>> [f.shape for f in model(torch.randn(1, 3, 224, 224))]     # a list of 4 maps

``features_only=True`` drops the pooling and the classifier (the state dict has no ``fc.*``)
and makes ``forward`` return the list of the chosen maps; the module names are unchanged, so a
full model's weights load into it once the ``fc.*`` entries are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reslab.errors import ModelConfigError


@dataclass(frozen=True)
class FeatureEntry:
    num_chs: int
    reduction: int
    module: str


class FeatureInfo:
    """timm's ``FeatureInfo`` interface: ``channels()``, ``reduction()``, ``module_name()``
    over the selected ``out_indices`` (each also takes one index), and iteration/len/indexing
    over the selected entries as dicts."""

    def __init__(self, entries: Sequence[FeatureEntry], out_indices: Sequence[int]):
        self.entries = list(entries)
        self.out_indices = tuple(out_indices)

    def _get(self, key: str, idx: int | None):
        if idx is None:
            return [getattr(self.entries[i], key) for i in self.out_indices]
        return getattr(self.entries[self.out_indices[idx]], key)

    def channels(self, idx: int | None = None):
        return self._get("num_chs", idx)

    def reduction(self, idx: int | None = None):
        return self._get("reduction", idx)

    def module_name(self, idx: int | None = None):
        return self._get("module", idx)

    def get_dicts(self) -> list[dict]:
        return [{"num_chs": e.num_chs, "reduction": e.reduction, "module": e.module}
                for e in (self.entries[i] for i in self.out_indices)]

    def __getitem__(self, idx: int) -> dict:
        return self.get_dicts()[idx]

    def __len__(self) -> int:
        return len(self.out_indices)

    def __iter__(self):
        return iter(self.get_dicts())

    def __repr__(self) -> str:
        return f"FeatureInfo({self.get_dicts()})"


def check_out_indices(name: str, out_indices, available: int) -> tuple[int, ...]:
    """``out_indices`` as a sorted tuple of valid positions (negative ones count from the end)."""
    if out_indices is None:
        return tuple(range(available))
    if isinstance(out_indices, int) or not all(isinstance(i, int) for i in out_indices):
        raise ModelConfigError(f"{name}: out_indices must be a list of integers, e.g. (1, 2, 3, 4), got {out_indices!r}")
    resolved = []
    for index in out_indices:
        position = index + available if index < 0 else index
        if not 0 <= position < available:
            raise ModelConfigError(f"{name}: out_indices {tuple(out_indices)} has {index}, but the model has "
                                   f"{available} feature levels (0 = stem, 1..{available - 1} = stages)")
        resolved.append(position)
    if len(set(resolved)) != len(resolved) or not resolved:
        raise ModelConfigError(f"{name}: out_indices must name distinct levels, at least one; got {tuple(out_indices)}")
    return tuple(sorted(resolved))


__all__ = ["FeatureEntry", "FeatureInfo", "check_out_indices"]
