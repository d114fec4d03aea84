"""Dataset registry: a dataset joins by registering its loader when its module loads.

```python
register_dataset("digits", load, description="8×8 handwritten digits, embedded")
register_dataset("shapes", load_shapes_entry, task="segment", directory="none")
```

:mod:`reslab.data` imports every dataset module, so all are registered once the package is; this
module imports none of them. A loader is called as ``load(data_dir=..., download=..., **options)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: What a dataset is for: ``"classify"`` (images and labels), ``"language"`` (a token stream),
#: ``"segment"`` (images and per-pixel masks).
DATASET_TASKS = ("classify", "language", "segment")
#: Whether a dataset reads a directory: never (generated or embedded), when given, or always.
DIRECTORY_USES = ("none", "optional", "required")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its name, its loader and what it is for.

    ``progress``: the loader takes ``progress=`` (bars for downloads and decoding);
    ``directory``: one of :data:`DIRECTORY_USES`.
    """

    name: str
    load: Callable[..., Any]
    task: str = "classify"
    description: str = ""
    progress: bool = False
    directory: str = "optional"


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, load: Callable[..., Any], *, task: str = "classify", description: str = "",
                     progress: bool = False, directory: str = "optional") -> DatasetEntry:
    """Register ``load`` as the loader of dataset ``name`` (lower case); returns the entry."""
    if task not in DATASET_TASKS:
        raise ValueError(f"dataset {name!r}: task must be one of {', '.join(DATASET_TASKS)}, got {task!r}")
    if directory not in DIRECTORY_USES:
        raise ValueError(f"dataset {name!r}: directory must be one of {', '.join(DIRECTORY_USES)}, got {directory!r}")
    key = name.lower()
    if key in _DATASETS:
        raise ValueError(f"dataset {key!r} registered twice")
    entry = DatasetEntry(key, load, task, description, progress, directory)
    _DATASETS[key] = entry
    return entry


def list_datasets(task: str | None = None) -> tuple[str, ...]:
    """Registered dataset names (of ``task`` only, if given), in the order they registered."""
    return tuple(name for name, entry in _DATASETS.items() if task is None or entry.task == task)


def dataset_entry(name: Any) -> DatasetEntry | None:
    """The entry registered as ``name`` (any case), or ``None``."""
    return _DATASETS.get(name.lower()) if isinstance(name, str) else None


__all__ = ["DATASET_TASKS", "DIRECTORY_USES", "DatasetEntry", "dataset_entry", "list_datasets", "register_dataset"]
