"""Loading trained runs back: ``load_run`` (model + config + dataset) and ``predict``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.data import load_dataset
from reslab.errors import CheckpointError, ConfigError, ReslabError
from reslab.models import create_model, model_info
from reslab.train.checkpoint import (
    CHECKPOINT_DIR,
    checkpoint_path,
    list_checkpoints,
    load_into,
    load_weights,
)
from reslab.train.evaluation import Prediction, image_files, load_images, predict_images
from reslab.train.rundir import read_config


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode, CPU), ``config`` (the run's ``config.json`` as a dict),
    ``dataset`` (loaded on first use from the config's data settings unless one was given),
    ``run_dir`` and the ``checkpoint`` file the weights came from."""

    model: nn.Module
    config: dict[str, Any]
    run_dir: Path
    checkpoint: Path
    _dataset: Any = field(default=None, repr=False)

    @property
    def dataset(self):
        """The run's :class:`~reslab.data.ImageDataset` (loaded once, on first access)."""
        if self._dataset is None:
            self._dataset = dataset_for_config(self.config)
        return self._dataset

    @property
    def class_names(self) -> list[str]:
        names = self.config.get("class_names")
        if names:
            return list(names)
        return list(self.dataset.class_names)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.config["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.config["std"])

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config["image_size"])  # type: ignore[return-value]


def check_data_fits(config: dict[str, Any], dataset, what: str) -> None:
    """ConfigError unless ``dataset`` has the classes and channels the run ``what`` was trained for.

    The one check every command that feeds a run other data goes through (``eval --data``, every
    analysis with ``--data`` or ``--twin``): a channel mismatch would crash deep inside torch, a
    class mismatch would silently give nonsense errors.
    """
    classes, channels = config.get("num_classes"), config.get("in_chans")
    if (classes is not None and dataset.num_classes != classes) or (channels is not None
                                                                    and dataset.in_chans != channels):
        raise ConfigError(
            f"data {dataset.name!r} has {dataset.num_classes} classes and {dataset.in_chans} channel(s), but {what} "
            f"was trained for {classes} classes and {channels} channel(s); use the run's own data (leave out --data) "
            "or data with the same classes and channels")


def dataset_for_config(config: dict[str, Any]):
    """Load the dataset a run was trained on, from its config's data settings."""
    try:
        return load_dataset(config["data"], data_dir=config.get("data_dir"), **dict(config.get("data_options") or {}))
    except ReslabError as exc:
        raise type(exc)(f"{exc} (loading the data of the run, dataset {config['data']!r}; pass dataset=... "
                        "or the data directory to use another copy)") from None


def model_for_data(name: str, dataset, options: dict[str, Any] | None = None) -> nn.Module:
    """``create_model(name)`` sized for ``dataset``: its classes (or vocabulary), channels and, for
    models that flatten images to vectors, its image size; a model that reads another kind of input
    (text for image models, images for sequence models) is a ConfigError saying which to use."""
    check_model_reads(name, dataset)
    return _create_sized(name, dataset.num_classes, dataset.in_chans, dataset.image_size, options)


def check_model_reads(name: str, dataset) -> None:
    if model_info(name).family == "segmentation":
        raise ConfigError(f"model {name!r} is a U-Net (per-pixel classes); it trains on segmentation data with "
                          "reslab train --task segment (reslab.train.segment.train_segmentation), not as a classifier")
    reads_text = model_info(name).family == "sequence"
    is_text = getattr(dataset, "kind", "images") == "text"
    if reads_text and not is_text:
        raise ConfigError(f"model {name!r} reads text (character tokens), but dataset {dataset.name!r} holds images; "
                          "use --data text (Python's help topics) or --data text --data-dir YOUR_FILE.txt")
    if is_text and not reads_text:
        raise ConfigError(f"dataset {dataset.name!r} is text, but model {name!r} reads images; use a sequence model "
                          "(transformer{d}, plain_transformer{d}, lstm{d}, gru{d}, ...)")


def _create_sized(name: str, num_classes: int, in_chans: int, image_size, options) -> nn.Module:
    options = dict(options or {})
    if model_info(name).family == "vector" and image_size and "image_size" not in options:
        options["image_size"] = tuple(int(v) for v in image_size)
    return create_model(name, num_classes=num_classes, in_chans=in_chans, **options)


def model_for_config(config: dict[str, Any]) -> nn.Module:
    """The run's architecture with fresh weights."""
    for key in ("model", "num_classes", "in_chans"):
        if key not in config:
            raise CheckpointError(f"the run config lacks {key!r}; it was not written by reslab train")
    return _create_sized(config["model"], config["num_classes"], config["in_chans"], config.get("image_size"),
                         config.get("model_options"))


def _split_source(run_dir: str | Path, checkpoint: str | Path) -> tuple[Path, str | Path]:
    """Accept a checkpoint file in place of the run directory (``RUN/checkpoints/x.safetensors``)."""
    path = Path(run_dir)
    if path.is_file() and path.suffix == ".safetensors":
        if path.parent.name != CHECKPOINT_DIR:
            raise CheckpointError(f"{str(path)!r} is not inside a run's {CHECKPOINT_DIR}/ folder, so its model "
                                  "settings are unknown; give the run directory")
        return path.parent.parent, path
    return path, checkpoint


def load_run(run_dir: str | Path, checkpoint: str | Path = "last", dataset=None) -> LoadedRun:
    """Load a trained run.

    Args:
        run_dir: a run directory (or a ``.safetensors`` file inside its ``checkpoints/``).
        checkpoint: ``"last"``, ``"init"``, ``"ema"``, ``"epoch_5"``, or a ``.safetensors`` path.
        dataset: an :class:`~reslab.data.ImageDataset` to use instead of loading the run's.

    Returns a :class:`LoadedRun` whose model is in eval mode on the CPU.

    Raises:
        CheckpointError: the directory is not a run, the checkpoint is missing, corrupt, or
            does not match the run's model.
    """
    run_dir, checkpoint = _split_source(run_dir, checkpoint)
    config = read_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    state, _ = load_weights(path)
    model = model_for_config(config)
    load_into(model, state, repr(str(path)))
    model.eval()
    return LoadedRun(model=model, config=config, run_dir=run_dir, checkpoint=path, _dataset=dataset)


def predict(source, images, top_k: int = 5, checkpoint: str | Path = "last") -> list[Prediction]:
    """Top-k classes of images, the Python twin of ``reslab predict``.

    Args:
        source: a :class:`LoadedRun`, a run directory or a checkpoint file inside one.
        images: paths of PNG/JPEG files or folders of them (read as image folders are for
            training, then converted to the run's channels and size: each prediction's ``notes``
            say how), or uint8 images ``(N, C, H, W)`` of the run's channels and size.
        top_k: classes per image, most probable first.
    """
    run = source if isinstance(source, LoadedRun) else load_run(source, checkpoint)
    in_chans = int(run.config["in_chans"])
    if isinstance(images, torch.Tensor):
        tensor, names = images, None
    else:
        paths = image_files([images] if isinstance(images, (str, Path)) else images)
        notes: list[list[str]] = []
        tensor, names = load_images(paths, in_chans, run.image_size, notes), [str(p) for p in paths]
        predictions = predict_images(run.model, tensor, run.class_names, run.mean, run.std, top_k=top_k,
                                     sources=names)
        for prediction, done in zip(predictions, notes):
            prediction.notes = done
        return predictions
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tuple(tensor.shape[1:]) != (in_chans, *run.image_size):
        raise ConfigError(f"images must be uint8 (N, {in_chans}, {run.image_size[0]}, {run.image_size[1]}) for this "
                          f"run, got {tensor.dtype} {tuple(tensor.shape)}; or pass image files, which are converted")
    return predict_images(run.model, tensor, run.class_names, run.mean, run.std, top_k=top_k, sources=names)


def list_run_checkpoints(run_dir: str | Path) -> list[str]:
    """Every checkpoint name ``load_run`` accepts for this run (``init``, ``epoch_K``..., ``last``, ``ema``)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    names = [n for n in ("init",) if (directory / f"{n}.safetensors").is_file()]
    names += [f"epoch_{k}" for k in list_checkpoints(run_dir)]
    names += [n for n in ("last", "ema") if (directory / f"{n}.safetensors").is_file()]
    return names

