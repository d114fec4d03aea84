"""Shared plumbing of the analyses: what to analyse, on which samples, and how results are saved.

An analysis *target* is either a model name (a fresh, seeded initialisation; the dataset says
how many classes, channels and pixels it needs) or a run directory written by the trainer (the
weights of one of its checkpoints, and the dataset it was trained on). Every analysis returns a
:class:`reslab.store.Result` — a dataclass of numbers, lists and NumPy arrays — saved as
``NAME.json`` plus ``NAME.npz`` (the contract and file format are in :mod:`reslab.store.results`).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from reslab.data import normalize
from reslab.errors import AnalysisError
from reslab.models import create_model, list_models, model_info, named_blocks
from reslab.store.jsonfiles import utc_now, versions
from reslab.store.results import Result, from_dict, read_result, to_plain
from reslab.store.rundir import (
    ANALYSIS_DIRNAME,
    KIND_PLAIN,
    KIND_RESIDUAL,
    config_dataset,
    config_kind,
    config_model,
    config_value,
    is_run_dir,
    read_config,
    read_metrics,
    same_training,
)
from reslab.train import load_run
from reslab.train.loading import check_data_fits, data_task, load_data_named, load_file, names_run_checkpoint
from reslab.train.transfer import weights_suffix
from reslab.utils import resolve_device

#: Reads a result file as a dict (the name analyses and experiments call it by).
load_result_file = read_result


# -- targets -------------------------------------------------------------------------------------
@dataclass
class Target:
    """One model to analyse, with the data it belongs to.

    Attributes:
        model: the network (CPU, eval mode).
        dataset: the :class:`reslab.data.ImageDataset` (classes, channels, normalisation).
        label: how plots name it: the model name, or the run directory's name.
        checkpoint: ``"init"`` for a fresh model, else the run's checkpoint name.
        run_dir: the run directory, or ``None`` for a model name.
        config: the run's ``config.json`` (``{}`` for a fresh model).
        seed: the seed a fresh model was initialised with (or the run's seed).
    """

    model: nn.Module
    dataset: Any
    label: str
    checkpoint: str = "init"
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)
    seed: int = 0

    @property
    def kind(self) -> str:
        return model_kind(self.model)

    @property
    def task(self) -> str:
        """What the model does with its data: ``"classify"``, ``"segment"`` or ``"language-model"``."""
        return data_task(self.dataset)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) the model expects: the run's own (from its config), else the dataset's."""
        mean, std = self.config.get("mean"), self.config.get("std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == self.dataset.in_chans:
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
        return tuple(self.dataset.mean), tuple(self.dataset.std)

    def samples(self, split: str = "test", samples: int | None = None, seed: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`select_samples` of this target's dataset, normalised as the model was trained."""
        mean, std = self.normalization
        return select_samples(self.dataset, split, samples, seed=seed, mean=mean, std=std)

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "model_name", type(self.model).__name__))

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, stored in result files."""
        dataset = self.dataset
        described = {
            "label": self.label,
            "model": self.model_name,
            "model_options": to_plain(dict(getattr(self.model, "model_options", {}) or {})),
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            "dataset": getattr(dataset, "name", None),
            "data_source": getattr(dataset, "source", None),
            "seed": self.seed,
        }
        if self.config.get("weights_file"):
            # Weights from outside a run: what was read, and the normalisation the images were given.
            mean, std = self.normalization
            described.update(weights_file=to_plain(self.config["weights_file"]), mean=list(mean), std=list(std),
                             normalization=self.config.get("normalization"))
        return described


def model_kind(model: nn.Module) -> str:
    """``"plain"`` for a network without shortcuts, else ``"residual"``."""
    return KIND_PLAIN if getattr(model, "is_plain", False) else KIND_RESIDUAL


def load_target(
    spec: str | Path,
    *,
    dataset=None,
    data: str | None = None,
    data_dir: str | Path | None = None,
    data_options: Mapping[str, Any] | None = None,
    download: bool = False,
    checkpoint: str = "last",
    model_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Target:
    """Resolve ``spec`` — a run directory or a model name — into a :class:`Target`.

    Args:
        spec: ``RUN_DIR`` (contains ``config.json``) or a model name (``"resnet20"``).
        dataset: an already loaded dataset to use (skips loading).
        data, data_dir, data_options, download: which dataset to load (``reslab.data.load_dataset``);
            required for a model name unless ``dataset`` is given; for a run, overrides its data.
        checkpoint: for a run: ``"last"``, ``"init"``, ``"ema"``, ``"epoch_5"`` or a file; for a model
            name: a weights file (``MODEL --checkpoint FILE``: :func:`reslab.train.loading.load_file`),
            else the model is a fresh initialisation.
        model_options: for a model name: options of ``create_model`` (``zero_init_last=True``,
            ``shortcut_pad="both"`` ...).
        seed: for a model name: the initialisation seed (same seed, same weights).
        mean, std: for a weights file: the normalisation its weights were trained with (default:
            the data's training statistics).
    """
    path = Path(spec)
    file_given = not is_run_dir(path) and not names_run_checkpoint(checkpoint)
    if (mean is not None or std is not None) and not file_given:
        raise AnalysisError("--mean/--std describe the weights of MODEL --checkpoint FILE; a run keeps the "
                            "normalisation it was trained with, and a fresh model the data's")
    if dataset is None and data is not None:
        dataset = load_data(data, data_dir=data_dir, data_options=data_options, download=download)
    if is_run_dir(path):
        if model_options:
            raise AnalysisError(f"--model-option applies to model names only; {path} is a trained run with fixed options")
        return _run_target(path, checkpoint, dataset)
    if path.is_dir() or "/" in str(spec) or str(spec).endswith(".json") or weights_suffix(path):
        missing = "does not exist" if not path.exists() else "is not a run directory (no config.json in it)"
        raise AnalysisError(
            f"{spec} {missing}; pass a directory written by "
            "`reslab train`, a model name such as resnet20, or a model name with a weights file: "
            "MODEL --checkpoint FILE"
        )
    if dataset is None:
        what = (f"model {spec!r} with the weights of {checkpoint} needs data to analyse" if file_given else
                f"model {spec!r} is a fresh initialisation and needs data to know its classes, channels and image size")
        raise AnalysisError(f"{what}: add --data (e.g. --data digits), or pass a RUN_DIR instead of a model name")
    if file_given:
        return file_target(str(spec), checkpoint, dataset, model_options=model_options, mean=mean, std=std, seed=seed)
    model = build_model(str(spec), dataset, seed=seed, **dict(model_options or {}))
    return Target(model=model, dataset=dataset, label=str(spec), checkpoint="init", seed=seed)


def file_target(name: str, checkpoint: str | Path, dataset, *, model_options=None, mean=None, std=None,
                seed: int = 0) -> Target:
    """``name`` with the weights of a file from outside reslab's runs, on ``dataset`` (its classes)."""
    loaded = load_file(name, checkpoint, dataset=dataset, model_options=model_options, mean=mean, std=std)
    file = Path(checkpoint)
    return Target(model=loaded.model, dataset=dataset, label=f"{name} ({file.name})", checkpoint=str(file),
                  config=loaded.config, seed=seed)


def load_data(name: str, data_dir=None, data_options: Mapping[str, Any] | None = None, download: bool = False):
    """The dataset ``name``: any of :func:`reslab.data.load_dataset`'s, or segmentation data (``shapes``,
    ``segfolder:DIR``)."""
    return load_data_named(name, data_dir=data_dir, download=download, **dict(data_options or {}))


def build_model(name: str, dataset, seed: int = 0, **options) -> nn.Module:
    """A fresh model for ``dataset``'s classes and channels, initialised from ``seed`` (CPU, eval mode).

    The global RNG is left as it was: the seed alone decides the weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, num_classes=dataset.num_classes, in_chans=dataset.in_chans, **options)
    return model.eval()


def _run_target(run_dir: Path, checkpoint: str, dataset=None) -> Target:
    if dataset is not None:
        # Before loading weights: other classes would give nonsense, other channels a crash deep in torch.
        check_data_fits(read_config(run_dir), dataset, f"run {run_dir}")
    loaded = _load_run(run_dir, checkpoint, dataset)
    config = dict(getattr(loaded, "config", {}) or {})
    model = loaded.model.cpu().eval()
    return Target(model=model, dataset=loaded.dataset, label=run_dir.name, checkpoint=str(checkpoint),
                  run_dir=run_dir, config=config, seed=int(config_value(config, "seed", default=0) or 0))


def _load_run(run_dir: Path, checkpoint: str, dataset=None):
    if dataset is None:
        return load_run(run_dir, checkpoint=checkpoint)
    return load_run(run_dir, checkpoint=checkpoint, dataset=dataset)


def checkpoint_lr(target: Target) -> float | None:
    """The learning rate in force at ``target``'s checkpoint, if the run logged it.

    ``epoch_K`` → the ``lr`` logged for epoch K; ``last``/``ema`` → the last epoch's; ``init`` → the
    first epoch's (else the config's base ``lr``). ``None`` for fresh models and unknown checkpoints.
    """
    if target.run_dir is None:
        return None
    rows = [r for r in read_metrics(target.run_dir) if isinstance(r.get("lr"), (int, float))]
    name = Path(target.checkpoint).stem if target.checkpoint.endswith(".safetensors") else target.checkpoint
    match = re.fullmatch(r"epoch_0*(\d+)", name)
    if match:
        epoch = int(match[1])
        for row in rows:
            if row.get("epoch") == epoch:
                return float(row["lr"])
        return None
    if name in ("last", "ema") and rows:
        return float(rows[-1]["lr"])
    if name == "init":
        if rows:
            return float(rows[0]["lr"])
        lr = config_value(target.config, "lr")
        return float(lr) if isinstance(lr, (int, float)) else None
    return None


# -- twins ---------------------------------------------------------------------------------------
_TWIN_NAMES = [
    (re.compile(r"resnet(\d+)"), "plain{}"),
    (re.compile(r"plain(\d+)"), "resnet{}"),
    (re.compile(r"cifar_resnet(\d+)"), "cifar_plain{}"),
    (re.compile(r"cifar_plain(\d+)"), "cifar_resnet{}"),
]


def twin_model_name(name: str) -> str | None:
    """The registered name of ``name``'s twin (``resnet56`` ↔ ``plain56``), or ``None`` if it has none."""
    registered = set(list_models())
    for regex, template in _TWIN_NAMES:
        match = regex.fullmatch(name)
        if match:
            twin = template.format(match[1])
            if twin in registered or twin.startswith("cifar_"):
                return twin
    return None


def twin_options(model: nn.Module) -> dict[str, Any]:
    """Model options of the twin: the same options with the shortcut switched on or off."""
    options = dict(getattr(model, "model_options", {}) or {})
    if model_kind(model) == KIND_RESIDUAL:
        options["shortcut"] = "none"
        # Options that need shortcuts have no meaning in the plain twin.
        options.pop("gated", None)
        options.pop("drop_path", None)
        options.pop("shortcut_pad", None)
    else:
        family = model_info(model.model_name).family
        options["shortcut"] = "A" if family == "cifar" else "B"
    return options


def fresh_twin(target: Target) -> Target:
    """The twin of ``target`` as a fresh model with the same seed (plain ↔ residual)."""
    name = target.model_name
    options = twin_options(target.model)
    twin_name = twin_model_name(name)
    if twin_name is not None:
        # A named twin (plain56) reads better in plots than "resnet56, shortcut=none".
        defaults = model_info(twin_name).defaults
        options = {k: v for k, v in options.items() if not (k == "shortcut" and defaults.get("shortcut") == v)}
        build_name, label = twin_name, twin_name
    else:
        build_name, label = name, f"{name} (shortcut={options['shortcut']})"
    model = build_model(build_name, target.dataset, seed=target.seed, **options)
    return Target(model=model, dataset=target.dataset, label=label, checkpoint="init", seed=target.seed)


def find_twin_run(run_dir: Path) -> Path | None:
    """A sibling run directory holding the twin of ``run_dir``'s model with the same seed and data."""
    config = read_config(run_dir)
    name, options = config_model(config)
    if name is None:
        return None
    want_kind = KIND_PLAIN if config_kind(name, options) == KIND_RESIDUAL else KIND_RESIDUAL
    twin_name = twin_model_name(name)
    for sibling in sorted(p for p in run_dir.parent.iterdir() if p != run_dir and is_run_dir(p)):
        other = read_config(sibling)
        other_name, other_options = config_model(other)
        if not same_training(config, other, ignore=("model", "model_options")):
            continue
        if other_name in (name, twin_name) and config_kind(other_name, other_options) == want_kind:
            return sibling
    return None


def resolve_twin(target: Target, twin: str | None, checkpoint: str | None = None, dataset=None) -> Target | None:
    """The twin to compare ``target`` with.

    twin: ``None`` (no twin), ``"auto"`` (a fresh model's twin is built with the same seed; a
        run's twin is the sibling run directory with the twin model, same seed and data), a
        RUN_DIR, or a model name (built fresh with ``target``'s data and seed).
    checkpoint: for a twin run, which checkpoint (default: the same as ``target``'s).
    """
    if twin is None:
        return None
    checkpoint = checkpoint or target.checkpoint
    if twin == "auto":
        if target.config.get("weights_file"):
            raise AnalysisError(f"--twin: {target.label} holds weights from a file, whose twin cannot be found or "
                                "built; name it: --twin RUN_DIR (or a model name, for a fresh twin)")
        if target.run_dir is None:
            return fresh_twin(target)
        found = find_twin_run(target.run_dir)
        if found is None:
            raise AnalysisError(
                f"--twin: found no sibling of run {target.run_dir} holding its twin (same seed and data, "
                "shortcut switched); pass the twin's RUN_DIR explicitly: --twin RUN_DIR"
            )
        return _run_target(found, checkpoint, dataset or target.dataset)
    if is_run_dir(twin):
        if target.run_dir is not None and Path(twin).resolve() == Path(target.run_dir).resolve():
            raise AnalysisError(f"--twin {twin} is the run being analysed; give the run of its "
                                f"{_other_kind(target.kind)} twin, or a bare --twin to find it among its siblings")
        return _checked_twin(target, _run_target(Path(twin), checkpoint, dataset or target.dataset), twin)
    if Path(twin).exists() or "/" in twin:
        missing = "does not exist" if not Path(twin).exists() else "not a run directory (no config.json in it)"
        raise AnalysisError(f"--twin {twin}: {missing}")
    model = build_model(twin, target.dataset, seed=target.seed)
    return _checked_twin(target, Target(model=model, dataset=target.dataset, label=twin, checkpoint="init",
                                        seed=target.seed), twin)


def _other_kind(kind: str) -> str:
    return KIND_PLAIN if kind == KIND_RESIDUAL else KIND_RESIDUAL


def _checked_twin(target: Target, twin: Target, given: str) -> Target:
    """``twin`` if it is of the other kind than ``target`` (a twin has its shortcuts switched)."""
    if twin.kind == target.kind:
        raise AnalysisError(f"--twin {given} is a {twin.kind} network like {target.label}; its twin is the "
                            f"{_other_kind(target.kind)} one (shortcuts switched), e.g. --twin "
                            f"{twin_model_name(target.model_name) or 'RUN_DIR'}")
    blocks, twin_blocks = len(named_blocks(target.model)), len(named_blocks(twin.model))
    if blocks and twin_blocks and blocks != twin_blocks:
        # Every comparison (responses, gradients, lesions) pairs block k with block k.
        raise AnalysisError(f"--twin {given} has {twin_blocks} blocks and {target.label} {blocks}: a twin is the same "
                            f"network with its shortcuts switched, e.g. --twin "
                            f"{twin_model_name(target.model_name) or 'RUN_DIR'}")
    return twin


# -- samples and batches -------------------------------------------------------------------------
def select_samples(dataset, split: str = "test", samples: int | None = None, seed: int = 0,
                   mean=None, std=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised samples of one split: ``(x float32 (N, C, H, W), y int64 (N,))`` on the CPU; for
    segmentation data y is the masks ``(N, H, W)``, for text x and y are windows of tokens ``(N, T)``
    (y shifted by one) and ``samples`` counts windows.

    samples: how many (a seeded random subset, kept in dataset order); ``None`` or more than the
    split holds → the whole split.
    mean, std: the normalisation (default: the dataset's own training-split statistics).
    """
    if split not in ("train", "test"):
        raise AnalysisError(f"split must be 'train' or 'test', got {split!r}")
    if getattr(dataset, "kind", None) == "text":
        return _text_windows(dataset, split, samples, seed)
    images = getattr(dataset, f"{split}_images")
    # A segmenter's targets are its masks: (N, H, W) class indices, one per pixel.
    labels = getattr(dataset, f"{split}_masks" if hasattr(dataset, f"{split}_masks") else f"{split}_labels").long()
    if images.shape[0] == 0:
        raise AnalysisError(f"dataset {dataset.name!r} has no {split} images to analyse")
    if samples is not None:
        if samples < 1:
            raise AnalysisError(f"--samples must be a positive number of images, got {samples}")
        if samples < images.shape[0]:
            generator = torch.Generator().manual_seed(seed)
            index = torch.randperm(images.shape[0], generator=generator)[:samples].sort().values
            images, labels = images[index], labels[index]
    return normalize(images, dataset.mean if mean is None else mean, dataset.std if std is None else std), labels


def _text_windows(dataset, split: str, samples: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A text's split cut into consecutive windows of ``dataset.context`` tokens, as the trainer
    evaluates it: ``(x int64 (N, T), y int64 (N, T))``, y the next character of each position."""
    tokens = getattr(dataset, f"{split}_tokens")
    context = int(dataset.context)
    count = (tokens.numel() - 1) // context
    if count < 1:
        raise AnalysisError(f"the {split} text of {dataset.name!r} is shorter than one window of {context} + 1 "
                            "characters; use a smaller context")
    starts = torch.arange(count) * context
    if samples is not None:
        if samples < 1:
            raise AnalysisError(f"--samples must be a positive number of windows, got {samples}")
        if samples < count:
            generator = torch.Generator().manual_seed(seed)
            starts = starts[torch.randperm(count, generator=generator)[:samples].sort().values]
    chunk = tokens[starts[:, None] + torch.arange(context + 1)]
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


def batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int, device=None, *, min_batch: int = 1
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Consecutive batches of ``(x, y)`` moved to ``device``.

    A last batch smaller than ``min_batch`` joins the one before it: BN in training mode cannot
    normalise a batch of one vector (BatchNorm1d sees one value per feature), so analyses that
    run BN in training mode ask for ``min_batch=2``.
    """
    if batch_size < 1:
        raise AnalysisError(f"--batch-size must be positive, got {batch_size}")
    starts = list(range(0, x.shape[0], batch_size))
    if len(starts) > 1 and x.shape[0] - starts[-1] < min_batch:
        starts.pop()
    for start, stop in zip(starts, starts[1:] + [x.shape[0]]):
        xb = x[start:stop]
        yb = None if y is None else y[start:stop]
        if device is not None:
            xb = xb.to(device, non_blocking=True)
            yb = None if yb is None else yb.to(device, non_blocking=True)
        yield xb, yb


def default_out_dir(target: Target) -> Path:
    """``RUN_DIR/analysis`` for a run; ``analysis/<model name>`` (in the working directory) for a model,
    ``analysis/<model name>-<file name>`` for a model with the weights of a file."""
    if target.run_dir is not None:
        return target.run_dir / ANALYSIS_DIRNAME
    if target.config.get("weights_file"):
        file = Path(target.checkpoint)
        return Path(ANALYSIS_DIRNAME) / f"{target.model_name}-{file.name[:-len(weights_suffix(file) or '')]}"
    return Path(ANALYSIS_DIRNAME) / target.label


def device_of(device: str | torch.device | None) -> torch.device:
    return resolve_device(device or "cpu")


def progress_enabled(quiet: bool = False) -> bool:
    """Progress bars only for a person watching a terminal."""
    return not quiet and sys.stderr.isatty()


__all__ = [
    "ANALYSIS_DIRNAME", "KIND_PLAIN", "KIND_RESIDUAL", "Result", "Target",
    "batches", "build_model", "checkpoint_lr", "config_dataset", "config_model", "default_out_dir",
    "device_of", "find_twin_run", "fresh_twin", "from_dict", "is_run_dir", "load_data", "load_result_file",
    "file_target", "load_target", "model_kind", "progress_enabled", "read_metrics", "resolve_twin", "select_samples",
    "twin_model_name", "twin_options", "utc_now", "versions",
]
