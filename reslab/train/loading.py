"""Loading trained weights back: ``load_run`` (a run: model + config + dataset), ``load_file`` (a model
name and a weights file from anywhere: the same object), ``load_source`` (either, as the commands take
them) and ``predict``."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from reslab.data import load_dataset
from reslab.errors import CheckpointError, ConfigError, DatasetError, ReslabError
from reslab.models import create_model, model_info
from reslab.train.checkpoint import (
    CHECKPOINT_DIR,
    checkpoint_path,
    list_checkpoints,
    load_into,
    load_weights,
)
from reslab.train.evaluation import Prediction, image_files, load_images, predict_images
from reslab.store.rundir import TASK_CLASSIFY, TASK_LANGUAGE_MODEL, TASK_SEGMENT, config_task
from reslab.tasks.common import sized_model
from reslab.train.rundir import read_config
from reslab.train.transfer import (
    classifier_name,
    input_conv_name,
    load_weights_file,
    map_names,
    read_source,
    weights_suffix,
)


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode, CPU), ``config`` (the run's ``config.json`` as a dict),
    ``dataset`` (loaded on first use from the config's data settings unless one was given),
    ``run_dir`` and the ``checkpoint`` file the weights came from.

    Weights from a file outside any run (:func:`load_file`) give the same object with ``run_dir``
    ``None`` and a config built from the model, the file and the data: its ``weights_file`` entry
    says what was read and how it was mapped, ``normalization`` where mean and std came from.
    """

    model: nn.Module
    config: dict[str, Any]
    run_dir: Path | None
    checkpoint: Path
    _dataset: Any = field(default=None, repr=False)

    @property
    def dataset(self):
        """The run's data (loaded once, on first access): an :class:`~reslab.data.ImageDataset`, a
        :class:`~reslab.data.segmentation.SegmentationDataset` or a :class:`~reslab.data.text.TextDataset`."""
        if self._dataset is None:
            if not self.config.get("data"):
                raise ConfigError(f"the weights of {self.checkpoint} come with no data; give --data (the dataset to "
                                  "use with them)")
            self._dataset = dataset_for_config(self.config)
        return self._dataset

    @property
    def task(self) -> str:
        """``"classify"``, ``"segment"`` or ``"language-model"`` (:func:`reslab.store.rundir.config_task`)."""
        return config_task(self.config)

    @property
    def class_names(self) -> list[str]:
        names = self.config.get("class_names")
        if names:
            return list(names)
        return list(self.dataset.class_names)

    @property
    def mean(self) -> tuple[float, ...]:
        self.require_normalization()
        return tuple(self.config["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        self.require_normalization()
        return tuple(self.config["std"])

    def require_normalization(self) -> None:
        """ConfigError unless the mean and std of the model's inputs are known (a file's may not be)."""
        if self.config.get("mean") is None or self.config.get("std") is None:
            raise ConfigError(f"the input normalisation of {self.checkpoint} is unknown: give the mean and std its "
                              "weights were trained with (--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 are "
                              "ImageNet's) or --data, whose training statistics are then used")

    @property
    def image_size(self) -> tuple[int, int]:
        if not self.config.get("image_size"):
            # The one way into image commands (bench, export, predict's images) for a run of text.
            where = self.run_dir or self.checkpoint
            raise ConfigError(f"{where} is a {TASK_NOUNS[self.task]}, which reads text, not images; measure it with "
                              f"reslab eval {where}, let it write with reslab predict {where} \"PROMPT\"")
        return tuple(self.config["image_size"])  # type: ignore[return-value]


def check_data_fits(config: dict[str, Any], dataset, what: str) -> None:
    """ConfigError unless ``dataset`` has the classes and channels the run ``what`` was trained for.

    The one check every command that feeds a run other data goes through (``eval --data``, every
    analysis with ``--data`` or ``--twin``): a channel mismatch would crash deep inside torch, a
    class mismatch would silently give nonsense errors. The data must also be of the run's task
    (images with labels, with masks, or text); a language model reads any text whose characters it
    knows (:func:`text_in_vocabulary` renumbers it), so its vocabulary size is not compared.
    """
    task, kind = config_task(config), data_task(dataset)
    if task != kind:
        raise ConfigError(f"data {dataset.name!r} is {_TASK_DATA[kind]}, but {what} is a {TASK_NOUNS[task]}, which "
                          f"reads {_TASK_DATA[task]}; leave out --data to use the run's own data")
    if task == TASK_LANGUAGE_MODEL:
        return
    classes, channels = config.get("num_classes"), config.get("in_chans")
    if (classes is not None and dataset.num_classes != classes) or (channels is not None
                                                                    and dataset.in_chans != channels):
        raise ConfigError(
            f"data {dataset.name!r} has {dataset.num_classes} classes and {dataset.in_chans} channel(s), but {what} "
            f"was trained for {classes} classes and {channels} channel(s); use the run's own data (leave out --data) "
            "or data with the same classes and channels")


#: What each task's data is and what each kind of run is called, for messages.
_TASK_DATA = {TASK_CLASSIFY: "labelled images", TASK_SEGMENT: "segmentation data (images with masks)",
              TASK_LANGUAGE_MODEL: "text"}
TASK_NOUNS = {TASK_CLASSIFY: "classifier", TASK_SEGMENT: "segmenter (U-Net)", TASK_LANGUAGE_MODEL: "language model"}


def data_task(dataset) -> str:
    """The task ``dataset`` serves: text trains language models, images with masks segmenters."""
    kind = getattr(dataset, "kind", "images")
    return {"text": TASK_LANGUAGE_MODEL, "segmentation": TASK_SEGMENT}.get(kind, TASK_CLASSIFY)


def load_data_named(name: str, data_dir: str | Path | None = None, download: bool = False, **options: Any):
    """The dataset ``name``: any of :func:`reslab.data.load_dataset`'s, or segmentation data (``shapes``,
    ``segfolder:DIR``), which :func:`reslab.data.segmentation.load_segmentation` reads."""
    from reslab.data.segmentation import is_segmentation_data, load_segmentation  # noqa: PLC0415

    if is_segmentation_data(name):
        return load_segmentation(name, data_dir=data_dir, **options)
    return load_dataset(name, data_dir=data_dir, download=download, **options)


def source_task(source: str | Path) -> str | None:
    """The task of the run ``source`` names (a run directory or a checkpoint inside one); ``None`` for
    anything else (a model name, a weights file from elsewhere, a path that does not exist)."""
    path = Path(source)
    if path.is_file() and path.parent.name == CHECKPOINT_DIR:
        path = path.parent.parent
    if not (path / "config.json").is_file():
        return None
    return config_task(read_config(path))


def dataset_for_config(config: dict[str, Any]):
    """Load the dataset a run was trained on, from its config's data settings.

    A segmentation run's data is re-created by :func:`reslab.data.segmentation.load_segmentation`
    (``shapes`` generated again from its options and seed, ``segfolder:DIR`` read from the folder);
    a language model's text is given the run's vocabulary (:func:`text_in_vocabulary`), so token k
    means the character the model learnt as k even where the corpus has changed since.
    """
    task = config_task(config)
    options = dict(config.get("data_options") or {})
    try:
        dataset = load_data_named(config["data"], data_dir=config.get("data_dir"), **options)
    except ReslabError as exc:
        raise type(exc)(f"{exc} (loading the data of the run, dataset {config['data']!r}; point to another copy "
                        "with --data-dir, or dataset=... in Python)") from None
    if task == TASK_LANGUAGE_MODEL and config.get("class_names"):
        return text_in_vocabulary(dataset, config["class_names"])
    return dataset


def text_in_vocabulary(dataset, vocabulary: Sequence[str]):
    """``dataset`` (a :class:`~reslab.data.text.TextDataset`) with its tokens renumbered into
    ``vocabulary`` (a language model's: one character per token id); a character the model never
    saw is a DatasetError naming it."""
    vocabulary = list(vocabulary)
    if list(dataset.vocab) == vocabulary:
        return dataset
    index = {c: i for i, c in enumerate(vocabulary)}
    unknown = [c for c in dataset.vocab if c not in index]
    if unknown:
        raise DatasetError(f"the text of {dataset.source} holds characters the model never saw ({unknown[:5]!r}); "
                           "a language model reads only its own vocabulary: use text without them")
    mapping = torch.tensor([index[c] for c in dataset.vocab], dtype=torch.int64)
    return dataclasses.replace(dataset, train_tokens=mapping[dataset.train_tokens],
                               test_tokens=mapping[dataset.test_tokens], vocab=vocabulary)


def model_for_data(name: str, dataset, options: dict[str, Any] | None = None) -> nn.Module:
    """``create_model(name)`` sized for ``dataset``: its classes (or vocabulary), channels and, for
    models that flatten images to vectors, its image size; a model that reads another kind of input
    (text for image models, images for sequence models) is a ConfigError saying which to use."""
    check_model_reads(name, dataset)
    return sized_model(name, dataset.num_classes, dataset.in_chans, dataset.image_size, options)


def check_model_reads(name: str, dataset) -> None:
    if model_info(name).family == "segmentation":
        raise ConfigError(f"model {name!r} is a U-Net (per-pixel classes); it trains on segmentation data with "
                          "reslab train (e.g. reslab train unet_resnet20 --data shapes), not as a classifier")
    reads_text = model_info(name).family == "sequence"
    is_text = getattr(dataset, "kind", "images") == "text"
    if reads_text and not is_text:
        raise ConfigError(f"model {name!r} reads text (character tokens), but dataset {dataset.name!r} holds images; "
                          "use --data text (Python's help topics) or --data text --data-dir YOUR_FILE.txt")
    if is_text and not reads_text:
        raise ConfigError(f"dataset {dataset.name!r} is text, but model {name!r} reads images; use a sequence model "
                          "(transformer{d}, plain_transformer{d}, lstm{d}, gru{d}, ...)")


def model_for_config(config: dict[str, Any]) -> nn.Module:
    """The run's architecture with fresh weights."""
    for key in ("model", "num_classes", "in_chans"):
        if key not in config:
            raise CheckpointError(f"the run config lacks {key!r}; it was not written by reslab train")
    return sized_model(config["model"], config["num_classes"], config["in_chans"], config.get("image_size"),
                         config.get("model_options"))


def _split_source(run_dir: str | Path, checkpoint: str | Path) -> tuple[Path, str | Path]:
    """Accept a checkpoint file in place of the run directory (``RUN/checkpoints/x.safetensors``)."""
    path = Path(run_dir)
    if path.is_file() and weights_suffix(path):
        if path.suffix != ".safetensors" or path.parent.name != CHECKPOINT_DIR:
            raise CheckpointError(f"{str(path)!r} is a weights file outside any run, so its architecture is unknown; "
                                  f"give the model name and the file: MODEL --checkpoint {path} (e.g. resnet18 "
                                  f"--checkpoint {path}), or the run directory it belongs to")
        return path.parent.parent, path
    return path, checkpoint


def load_run(run_dir: str | Path, checkpoint: str | Path = "last", dataset=None) -> LoadedRun:
    """Load a trained run.

    Args:
        run_dir: a run directory (or a ``.safetensors`` file inside its ``checkpoints/``).
        checkpoint: ``"last"``, ``"init"``, ``"ema"``, ``"epoch_5"``, or a ``.safetensors`` path.
        dataset: the data to use instead of loading the run's (of the run's task: images, images
            with masks, or text, which is renumbered into the run's vocabulary).

    Every task loads: the model is built from the config's ``model``, ``num_classes`` (a language
    model's vocabulary size), ``in_chans``, ``image_size`` and ``model_options``; :attr:`LoadedRun.task`
    says which it is.

    Returns a :class:`LoadedRun` whose model is in eval mode on the CPU.

    Raises:
        CheckpointError: the directory is not a run, the checkpoint is missing, corrupt, or
            does not match the run's model.
    """
    run_dir, checkpoint = _split_source(run_dir, checkpoint)
    config = read_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    state, _ = load_weights(path)
    task = config_task(config)
    if task in SHIPPED_TASKS:
        model = model_for_config(config)
    else:
        model, dataset = _model_of_own_task(task, config, run_dir, dataset)
    load_into(model, state, repr(str(path)))
    model.eval()
    if dataset is not None and config_task(config) == TASK_LANGUAGE_MODEL and config.get("class_names"):
        dataset = text_in_vocabulary(dataset, config["class_names"])
    return LoadedRun(model=model, config=config, run_dir=run_dir, checkpoint=path, _dataset=dataset)


#: The tasks reslab ships, whose models the registry builds from a run's config alone.
SHIPPED_TASKS = (TASK_CLASSIFY, TASK_SEGMENT, TASK_LANGUAGE_MODEL)


def _model_of_own_task(task: str, config: dict[str, Any], run_dir: Path, dataset):
    """A run of a task registered by its user's own code: the task builds the model (and loads the data)
    as it did for training; without that code loaded, one line says what the run needs."""
    from reslab.tasks import get_task, task_names  # noqa: PLC0415 - the tasks register when reslab.tasks loads
    from reslab.train.config import TrainConfig  # noqa: PLC0415

    if task not in task_names():
        raise ConfigError(f"{str(run_dir)!r} is a run of task {task!r}, which reslab does not ship (its own code "
                          "registered it with reslab.tasks.register_task); load it from that code "
                          "(reslab.train.load_run after the task is registered); reslab's commands take runs of "
                          f"{', '.join(SHIPPED_TASKS)}")
    own = get_task(task)
    settings = TrainConfig.from_dict(config)
    data = dataset if dataset is not None else own.load_data(settings)
    return own.build_model(settings, data), data


#: What ``--checkpoint`` names in a run (a weights file with a model name is anything else).
_RUN_CHECKPOINT = re.compile(r"last|init|ema|(?:epoch_?)?\d+")
#: What a model-name source's messages tell the user to give instead.
MODEL_FILE_HINT = ("give the architecture the file was saved from as MODEL (e.g. resnet50 for torchvision's "
                   "resnet50)")


def names_run_checkpoint(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` is one of a run's names (``last``, ``init``, ``ema``, ``epoch_K``), not a file."""
    return checkpoint is None or bool(_RUN_CHECKPOINT.fullmatch(str(checkpoint)))


def load_source(source: str | Path, checkpoint: str | Path = "last", *, dataset=None,
                model_options: Mapping[str, Any] | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, in_chans: int | None = None,
                check_classes: bool = True) -> LoadedRun:
    """What every command that takes a run takes: ``RUN_DIR`` (or a checkpoint inside one) with
    ``checkpoint`` a run's name, or ``MODEL`` with ``checkpoint`` a weights file (:func:`load_file`).

    ``model_options``, ``mean``, ``std`` and ``in_chans`` belong to a weights file: a run keeps the
    ones it was trained with, so they are refused with one. ``dataset`` is the run's data (its
    classes and channels are checked) or the file's (see :func:`load_file`).
    """
    path = Path(source)
    if path.exists():
        given = [flag for flag, value in (("--model-option", model_options), ("--mean", mean), ("--std", std))
                 if value]
        if given:
            raise ConfigError(f"{' and '.join(given)} describe the weights of MODEL --checkpoint FILE; {source} is a "
                              "run, which keeps the options and normalisation it was trained with")
        if dataset is not None:
            check_data_fits(read_config(_split_source(path, checkpoint)[0]), dataset, f"the model of {source}")
        return load_run(path, checkpoint, dataset=dataset)
    if weights_suffix(path):
        raise ConfigError(f"{source} does not exist; give a run directory, or a weights file as MODEL --checkpoint "
                          "FILE")
    if "/" in str(source):
        return load_run(path, checkpoint, dataset=dataset)  # says the run directory does not exist
    if names_run_checkpoint(checkpoint):
        try:
            model_info(str(source))
        except ReslabError as exc:  # neither a run on disk nor a model name: say both
            raise ConfigError(f"no run directory {str(source)!r} here, and it is no model name either ({exc})") from None
        raise ConfigError(f"{source} is a model name: give its weights with --checkpoint FILE (a state-dict file: "
                          f".pth, .pt, .pth.tar, .bin, .safetensors), or a run directory instead of the name "
                          f"(--checkpoint {checkpoint} names a checkpoint of a run)")
    return load_file(str(source), checkpoint, dataset=dataset, model_options=model_options, mean=mean, std=std,
                     in_chans=in_chans, check_classes=check_classes)


def load_file(model: str, checkpoint: str | Path, *, dataset=None, model_options: Mapping[str, Any] | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None, in_chans: int | None = None,
              check_classes: bool = True) -> LoadedRun:
    """``model`` with the weights of a state-dict file from anywhere (``MODEL --checkpoint FILE``).

    The file is read as ``reslab finetune`` reads one (:func:`reslab.train.transfer.read_source`:
    torchvision, timm and other state dicts, wrapper entries and prefixes, another classifier name),
    and every tensor must match, the first that does not named with both shapes.

    * The classifier's size comes from the file. With ``dataset``, its classes must agree
      (``check_classes``; a benchmark that only compares outputs passes ``False``), and the model
      reads the data's channels: the first convolution is adapted to them as fine-tuning does.
      Without data, the channels are the file's (or ``in_chans``).
    * ``mean``/``std``: the normalisation the weights were trained with (community weights differ:
      ImageNet statistics on CIFAR images are common); without them, the data's training statistics.
    * ``model_options``: ``create_model`` options, e.g. ``{"shortcut_pad": "both"}`` for weights of
      the public CIFAR ResNet code (docs/models.md).

    Returns a :class:`LoadedRun` with ``run_dir=None``; ``config["weights_file"]`` records the file,
    the entry read, renamed tensors, the channel adaptation and notes, ``config["normalization"]``
    where mean and std came from.
    """
    path = Path(checkpoint)
    info = model_info(model)
    options = dict(model_options or {})
    if not path.is_file() or not weights_suffix(path):
        raise ConfigError(f"--checkpoint {str(checkpoint)!r}: with a model name it must be a weights file on local disk "
                          "(.safetensors, .pth, .pt, .pth.tar, .th, .bin or .ckpt); last, init, ema and epoch_K name "
                          "the checkpoints of a run directory")
    if dataset is not None:
        check_model_reads(model, dataset)
    if (mean is None) != (std is None):
        raise ConfigError("give --mean and --std together (the normalisation the weights were trained with)")
    source = read_source(path, what="--checkpoint")
    where = f"--checkpoint {path}"
    hint = (f"the file holds a {source.model}: give {source.model} as MODEL" if source.model and source.model != model
            else MODEL_FILE_HINT)
    # What the file decides (the classifier's size, its input channels), read off a shape-only model.
    image_size = tuple(dataset.image_size) if dataset is not None else (info.default_input_size,) * 2
    with torch.device("meta"):
        probe = sized_model(model, None, in_chans or 3, image_size, options)
    state, _ = map_names(probe, source.state)
    head = classifier_name(probe)
    rows = state.get(f"{head}.weight")
    if rows is None:
        raise ConfigError(f"{where} has no classifier {head}.weight (nor linear/head/classifier) to size {model}'s head "
                          f"from; {MODEL_FILE_HINT}")
    num_classes = int(rows.shape[0])
    conv = input_conv_name(probe)
    file_chans = int(state[f"{conv}.weight"].shape[1]) if conv and f"{conv}.weight" in state else None
    channels = dataset.in_chans if dataset is not None else in_chans or file_chans or 3
    if dataset is not None and check_classes and num_classes != dataset.num_classes:
        raise ConfigError(f"{where} has a {num_classes}-way classifier ({head}.weight {tuple(rows.shape)}), but "
                          f"{dataset.name!r} has {dataset.num_classes} classes; use data with {num_classes} classes, "
                          f"or fine-tune the file on {dataset.name} first (reslab finetune {path} --model {model} "
                          f"--data {dataset.name})")
    stats = _normalization(mean, std, channels, dataset)
    net = sized_model(model, num_classes, channels, image_size, options)
    record = load_weights_file(net, source, where, hint)
    net.eval()
    names = (list(dataset.class_names) if dataset is not None and dataset.num_classes == num_classes
             else [str(i) for i in range(num_classes)])
    config = {
        "model": model, "model_options": options, "num_classes": num_classes, "in_chans": channels,
        "image_size": list(image_size), "mean": stats[0], "std": stats[1], "normalization": stats[2],
        "class_names": names, "data": getattr(dataset, "name", None),
        "data_options": dict(getattr(dataset, "options", {}) or {}) if dataset is not None else {},
        "weights_file": {**source.origin, **record, "file_channels": file_chans},
    }
    return LoadedRun(model=net, config=config, run_dir=None, checkpoint=path, _dataset=dataset)


def _normalization(mean, std, channels: int, dataset) -> tuple[list[float] | None, list[float] | None, str]:
    """(mean, std, where they came from) of a weights file's inputs."""
    if mean is None:
        if dataset is None:
            return None, None, "unknown (no --mean/--std, no --data)"
        return ([float(v) for v in dataset.mean], [float(v) for v in dataset.std],
                f"the training statistics of {dataset.name} (no --mean/--std given)")
    values = []
    for flag, given in (("--mean", mean), ("--std", std)):
        numbers = [float(v) for v in given]
        if len(numbers) == 1:
            numbers *= channels
        if len(numbers) != channels or not all(math.isfinite(v) for v in numbers):
            raise ConfigError(f"{flag} {','.join(map(str, given))}: expected {channels} finite numbers (one per input "
                              f"channel) or one for all, e.g. {flag} " + ",".join(["0.5"] * channels))
        values.append(numbers)
    if not all(v > 0 for v in values[1]):
        raise ConfigError(f"--std {','.join(map(str, std))}: every standard deviation must be positive")
    return values[0], values[1], "given with --mean/--std"


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
    if run.task == TASK_SEGMENT:
        raise ConfigError("predict gives a classifier's top-k classes; this run is a segmenter (U-Net): its masks "
                          "come from reslab.train.prediction.predict_masks (reslab predict RUN IMAGES --masks DIR)")
    if run.task == TASK_LANGUAGE_MODEL:
        raise ConfigError("predict gives a classifier's top-k classes; this run is a language model: continue a "
                          "prompt with reslab.train.prediction.continue_text (reslab predict RUN \"prompt\")")
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

