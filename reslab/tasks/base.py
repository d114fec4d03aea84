"""The task contract: what a kind of run (classify, segment, language-model, ...) tells the engine.

The engine (:mod:`reslab.train`) owns everything every run needs — the run directory and its
lock, resume, signals, checkpoints, schedules, optimizers, bf16, DDP, metrics files. A task says
only what differs between kinds of run:

* which runs it claims (:meth:`Task.claims`: from the model and data names, so ``--task`` is
  needed only where two tasks claim the same pair), its own options (:attr:`Task.settings`, a
  :class:`~reslab.settings.Settings` class filled from ``task_options``) and its default recipe;
* the data (:meth:`Task.load_data`), the model sized for it (:meth:`Task.build_model`), the checks
  of the pair (:meth:`Task.check`), the device-resident loaders (:meth:`Task.loaders`);
* a step's loss and metric sums: :meth:`Task.criterion` and :meth:`Task.flatten` (the logits and
  targets as ``(n, K)`` and ``(n,)``: one loss and one error count serve every task);
* evaluation (:meth:`Task.evaluate` gives all-reducible sums, :meth:`Task.test_metrics` the
  numbers), the per-epoch line (:meth:`Task.epoch_parts`) and the facts ``config.json`` records.

A task registers itself when its module loads (:func:`register_task`), as timm's models do; the
registry imports no task. A task defined in a user's own file registers the same way.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.settings import Settings
from reslab.tasks.common import eval_sums, flat_outputs, result_from_sums


class Task:
    """Base of every task; subclass it, set :attr:`name`, override what differs and register an instance."""

    #: The name runs record (``config.json``'s ``"task"``) and ``--task`` takes.
    name: ClassVar[str] = ""
    #: One line for ``--help`` and errors.
    description: ClassVar[str] = ""
    #: The task's own options (``task_options`` / ``--task-option KEY=VALUE``), or None.
    settings: ClassVar[type[Settings] | None] = None
    #: What a training sample is (plural, and the short form of rates: ``img/s``).
    unit: ClassVar[tuple[str, str]] = ("samples", "samples")
    #: Engine settings the task does not use, with the value that means "off": a run that sets
    #: another value is refused before it starts (one line naming the task). By default the
    #: engine's image augmentations: a task's own loader applies none of them.
    unused: ClassVar[Mapping[str, Any]] = {"crop_padding": 0, "flip": False, "cutout": 0, "test_flip": False}
    #: Task options that may change when a run is resumed.
    resumable: ClassVar[frozenset[str]] = frozenset()
    #: Whether :meth:`claims` names every pair the task can train (then ``--task NAME`` for another
    #: pair is refused at once); a task without it trains what it is told to.
    exclusive: ClassVar[bool] = False

    # -- choosing ------------------------------------------------------------------------------
    def claims(self, model: str, data: str) -> bool:
        """Whether a run of ``model`` on ``data`` is this task's (``--task`` then need not be given)."""
        return False

    def default_recipe(self, data: str) -> str | None:
        """The recipe a run without ``--recipe`` starts from (None: the engine's defaults alone)."""
        return None

    def augment(self, config) -> str:
        """How the training batches are augmented, in words (``config.json``'s ``augment``)."""
        return "none by the engine (the task's loader decides)"

    def options(self, values: Mapping[str, Any] | None, where: str = "--task-option") -> Settings | None:
        """``task_options`` checked by :attr:`settings` (unknown or bad values are one ConfigError)."""
        values = dict(values or {})
        if self.settings is None:
            if values:
                raise ConfigError(f"{where} {next(iter(values))}=...: task {self.name!r} takes no options")
            return None
        try:
            return self.settings.from_dict(values, where=f"{where} (task {self.name})")
        except ConfigError as exc:
            # The settings class names its fields as flags (--vflip); a task's options are KEY=VALUE pairs.
            message = str(exc)
            for name in self.settings.field_names():
                message = message.replace("--" + name.replace("_", "-"), f"{where} {name}")
            raise ConfigError(message) from None

    # -- data and model ------------------------------------------------------------------------
    def load_data(self, config, *, download: bool = False, progress: bool = True):
        """The dataset ``config.data`` names, with ``config.data_options``."""
        raise NotImplementedError

    def build_model(self, config, dataset) -> nn.Module:
        """``config.model`` (with ``config.model_options``) sized for ``dataset``."""
        raise NotImplementedError

    def check(self, config, model: nn.Module, dataset) -> None:
        """ConfigError for a model, data or settings this task cannot train (before anything is written)."""

    def num_train(self, dataset) -> int | None:
        """Training samples an epoch draws from (None: the loader decides, e.g. windows of a text)."""
        return getattr(dataset, "num_train", None)

    def loaders(self, config, dataset, *, batch_size: int, device: torch.device, rank: int = 0,
                world_size: int = 1):
        """``(train_loader, test_loader or None)``: iterables of ``(x, y)`` on ``device``, this rank's
        share of every global batch; the train loader has ``set_epoch(e)``, ``len()`` and ``dataset_size``."""
        raise NotImplementedError

    # -- one step ------------------------------------------------------------------------------
    def criterion(self, config) -> nn.Module:
        """The training loss on flattened logits and targets."""
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def flatten(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(n, K)`` and targets ``(n,)`` from a batch's outputs and targets."""
        return flat_outputs(logits, y)

    def samples(self, y: torch.Tensor) -> int:
        """How many training samples a batch of targets holds (the rate's unit: images, characters)."""
        return y.numel()

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, loader, *, bf16: bool = False, flip: bool = False) -> torch.Tensor:
        """Sums over ``loader`` as a float64 tensor on the model's device (the engine all-reduces it)."""
        return eval_sums(model, iter(loader), bf16, flip=flip, flatten=self.flatten)

    def test_metrics(self, sums: torch.Tensor, prefix: str = "test") -> dict[str, Any]:
        """``{prefix}_loss``, ``{prefix}_error`` and the task's own numbers from :meth:`evaluate`'s sums."""
        result = result_from_sums(sums.cpu())
        return {f"{prefix}_loss": result.loss, f"{prefix}_error": result.error}

    def train_metrics(self, loss_sum: float, wrong: float, count: float) -> dict[str, Any]:
        """The epoch's training numbers from the step sums (mean loss, error)."""
        return {"train_loss": loss_sum / count if count else None, "train_error": wrong / count if count else None}

    def epoch_parts(self, record: Mapping[str, Any]) -> list[str]:
        """The task's pieces of the per-epoch line (train and test numbers)."""
        parts = [f"train loss {record['train_loss']:.4f} error {100 * record['train_error']:.2f}%"]
        if record.get("test_error") is not None:
            parts.append(f"test loss {record['test_loss']:.4f} error {100 * record['test_error']:.2f}%")
        return parts

    def summary_parts(self, last: Mapping[str, Any]) -> list[str]:
        """The task's piece of a finished run's one-line summary, from the last test numbers."""
        if last.get("test_error") is None:
            return ["no test set"]
        return [f"test accuracy {100 * (1 - last['test_error']):.2f}% "
                f"(error {100 * last['test_error']:.2f}%, loss {last['test_loss']:.4f})"]

    def data_facts(self, dataset) -> dict[str, Any]:
        """What ``config.json`` records about the data: what a model is sized and normalised by, and
        the dataset's name, source and resolved options (each read with a default, so a task's own
        dataset object needs only what it has)."""
        image_size = getattr(dataset, "image_size", None)
        return {
            "num_classes": getattr(dataset, "num_classes", None), "in_chans": getattr(dataset, "in_chans", None),
            "image_size": list(image_size) if image_size else None,
            "mean": _listed(getattr(dataset, "mean", None)), "std": _listed(getattr(dataset, "std", None)),
            "dataset": {"name": getattr(dataset, "name", None), "source": getattr(dataset, "source", None),
                        "options": dict(getattr(dataset, "options", None) or {}),
                        "num_train": getattr(dataset, "num_train", None), "num_test": getattr(dataset, "num_test", None)},
        }

    def facts(self, dataset, model: nn.Module) -> dict[str, Any]:
        """What else ``config.json`` records about this task's data and model (once each)."""
        return {}


def _listed(values) -> list | None:
    return None if values is None else list(values)


# -- the registry ---------------------------------------------------------------------------------
_TASKS: dict[str, Task] = {}


def register_task(task: Task | type[Task]) -> Task:
    """Add ``task`` (an instance, or a class to instantiate) to the registry; usable as a class decorator."""
    instance = task() if isinstance(task, type) else task
    if not instance.name:
        raise ConfigError(f"task {type(instance).__name__} has no name")
    _TASKS[instance.name] = instance
    return task if isinstance(task, type) else instance


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> Task:
    """The registered task ``name``; ConfigError listing the tasks (with a suggestion) otherwise."""
    try:
        return _TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_TASKS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown task {name!r}{hint}; tasks are: {', '.join(_TASKS)}") from None


def choose_task(model: str, data: str, task: str | None = None) -> Task:
    """The task of a run of ``model`` on ``data``: ``task`` when given, else the one task that claims
    the pair; ``classify`` when none does. Two claiming it is a ConfigError asking for ``--task``."""
    claiming = [t for t in _TASKS.values() if t.claims(model, data)]
    by_model = [t for t in claiming if t.claims(model, "")]
    by_data = [t for t in claiming if data and t.claims("", data)]
    if by_model and by_data and not set(by_model) & set(by_data):
        raise ConfigError(f"{model} and --data {data} do not go together: {model} is a {by_model[0].name} model and "
                          f"{data} is {by_data[0].name} data; give {by_model[0].name} data or a {by_data[0].name} "
                          "model")
    if task:
        chosen = get_task(task)
        others = [t for t in claiming if t is not chosen]
        if not chosen.claims(model, data) and (chosen.exclusive or others):
            natural = others[0].name if len(others) == 1 else ("classify" if not others else None)
            pair = f"{model} on {data}" if data else model
            instead = (f"; {pair} is a {natural} run: leave --task out" if natural
                       else f"; choose --task {' or --task '.join(t.name for t in others)}")
            what = f" ({chosen.description})" if chosen.description else ""
            raise ConfigError(f"--task {chosen.name} does not take {pair}{what}" + instead)
        return chosen
    if len(claiming) > 1:
        raise ConfigError(f"{model} on {data} could be trained as {' or '.join(t.name for t in claiming)}; "
                          f"choose with --task {claiming[0].name} (or {', '.join(t.name for t in claiming[1:])})")
    return claiming[0] if claiming else get_task("classify")


__all__ = ["Task", "choose_task", "get_task", "register_task", "task_names"]
