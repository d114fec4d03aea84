"""Training settings: the :class:`TrainConfig` dataclass, recipes (TOML files) and overrides.

A recipe is a readable TOML file in ``reslab/train/recipes/`` that sets some of the fields
of :class:`TrainConfig`; everything it leaves out keeps the dataclass default. The command
line and the Python API then override single fields::

    config = resolve_config("cifar10-fast", model="resnet56", overrides={"lr": 0.2})
    config = resolve_config("digits-quick", overrides=parse_overrides(["epochs=5", "nesterov=true"]))

Every value is checked here, once, so the trainer never sees a bad setting: an unknown
recipe, key or value raises :class:`~reslab.errors.ConfigError` that names it and lists what
is valid.
"""

from __future__ import annotations

import difflib
import math
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from reslab.errors import ConfigError
from reslab.settings import Settings, SettingValueError, parse_key_values, setting
from reslab.settings import coerce as coerce_setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

RECIPE_DIR = Path(__file__).with_name("recipes")

SCHEDULES = ("constant", "step", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adamw")

#: Settings that may change when a run is resumed: they do not alter what has been computed so
#: far. ``epochs``/``iterations`` extend (or shorten) the run; schedules defined by the run's
#: length (cosine, one-cycle) are then recomputed for the new length.
RESUMABLE_KEYS = frozenset({
    "epochs", "iterations", "eval_every", "save_every", "quiet", "tensorboard", "device", "compile",
    "data_dir", "download", "eval_batch_size", "out", "threads",
})


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Every engine setting of a training run (see ``docs/training.md`` for each recipe's values).

    Length: give ``epochs`` or ``iterations`` (optimizer steps); with ``iterations`` the last
    epoch may be partial. ``batch_size`` is the *global* batch (split over ranks and
    ``accumulate`` micro-batches). What the task adds (its own options) is ``task_options``,
    checked by the task's settings class (:mod:`reslab.tasks`).
    """

    # -- what to train on what ---------------------------------------------------------------
    model: str = setting("resnet20", "model name", cli=False)
    model_options: dict[str, Any] = setting(default_factory=dict, help="options of the model", cli=False)
    data: str = setting("cifar10", "dataset name", metavar="NAME")
    data_dir: str | None = setting(None, "where the dataset's files are (default $RESLAB_DATA, then ./data); for "
                                         "imagefolder the folder of class folders, for text one UTF-8 text file, "
                                         "for segfolder the folder with images/ and masks/", metavar="DIR")
    data_options: dict[str, Any] = setting(default_factory=dict, help="options of the data", cli=False)
    download: bool = setting(False, "download CIFAR if its files are missing (never done otherwise)")
    task: str | None = setting(None, "what the run learns: classify, segment, language-model or a registered task "
                                     "(default: chosen from the model and the data)", metavar="TASK")
    task_options: dict[str, Any] = setting(default_factory=dict, help="options of the task", cli=False)
    recipe: str | None = setting(None, "the recipe these settings started from", cli=False)

    # -- transfer learning (reslab finetune; see reslab/train/transfer.py) ----------------------
    init_from: str | None = setting(None, "start from these weights (a run, a reslab checkpoint or a state-dict "
                                          "file): every tensor but the head", metavar="SOURCE", cli=False)
    freeze: list[str] = setting(default_factory=list, help="modules kept fixed: stem, layer1, layer2.0, ...",
                                cli=False)
    freeze_bn: bool = setting(False, "every BN layer keeps the source's statistics and affine parameters", cli=False)
    head_lr: float = setting(0.0, "peak lr of the new head (0: the same as lr)", minimum=0, cli=False)

    # -- length and batch ---------------------------------------------------------------------
    epochs: int | None = setting(None, "epochs to train (replaces the recipe's length)", minimum=1)
    iterations: int | None = setting(None, "optimizer steps to train (replaces the recipe's length)", minimum=1)
    batch_size: int = setting(128, "global batch size (split across processes)", minimum=1)
    eval_batch_size: int = setting(500, "samples per evaluation batch", minimum=1)
    accumulate: int = setting(1, "micro-batches per step: the same gradient in 1/accumulate the memory", minimum=1)

    # -- optimizer ----------------------------------------------------------------------------
    optimizer: Literal["sgd", "adamw"] = setting("sgd", "sgd (momentum, nesterov) or adamw (betas 0.9/0.99)")
    lr: float = setting(0.1, "peak / initial learning rate")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum")
    weight_decay: float = setting(1e-4, "weight decay", minimum=0)
    no_wd_on_bn_and_bias: bool = setting(False, "no weight decay on BN parameters and biases")
    grad_clip: float = setting(0.0, "max global gradient norm (0: off)", minimum=0)

    # -- learning-rate schedule ---------------------------------------------------------------
    schedule: Literal["constant", "step", "cosine", "onecycle"] = setting("step", "learning rate per step")
    milestones: list[int] = setting(default_factory=list, help="step: where lr is multiplied by gamma")
    milestone_unit: Literal["iterations", "epochs"] = setting("iterations", "unit of the milestones")
    gamma: float = setting(0.1, "step: the factor at each milestone")
    min_lr: float = setting(0.0, "cosine and one-cycle end here", minimum=0)
    onecycle_peak_at: float = setting(0.25, "fraction of training at which one-cycle reaches lr")
    onecycle_start_factor: float = setting(0.1, "one-cycle starts at lr times this", minimum=0, maximum=1)
    warmup: int = setting(0, "length of the warm-up (0: none)", minimum=0)
    warmup_unit: Literal["iterations", "epochs"] = setting("iterations", "unit of the warm-up")
    warmup_lr: float = setting(0.0, "lr at the start of the warm-up", minimum=0)
    warmup_mode: Literal["constant", "linear"] = setting("linear", "constant: warmup_lr throughout; linear: a ramp")
    warmup_min_depth: int = setting(0, "warm up only models at least this deep (weight layers)", minimum=0)
    # He et al. 2015 (section 4.2): "0.01 until the training error is below 80%". > 0: a constant warm-up
    # ends after the first epoch whose training error is below this; `warmup` is its longest.
    warmup_until_error: float = setting(0.0, "end a constant warm-up after the first epoch below this training "
                                             "error (0: a warm-up of fixed length)")

    # -- regularisation -----------------------------------------------------------------------
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")
    ema: bool = setting(False, "keep an EMA of the weights and evaluate it too")
    ema_decay: float = setting(0.999, "decay of the EMA")
    crop_padding: int = setting(4, "pad by this many pixels, then crop at random (0: no crop)", minimum=0)
    flip: bool = setting(True, "random horizontal flips")
    cutout: int = setting(0, "side of a random square cut out of each image (0: none)", minimum=0)
    test_flip: bool = setting(False, "also report test accuracy with test-time flips")

    # -- speed --------------------------------------------------------------------------------
    bf16: bool = setting(False, "bf16 autocast (CUDA, or a CPU with bf16 units: AVX512-BF16/AMX; float32 with a "
                                "note elsewhere)")
    channels_last: bool = setting(False, "channels-last memory format")
    compile: bool = setting(False, "torch.compile the model")
    sync_bn: bool = setting(False, "SyncBatchNorm across ranks (CUDA only)")
    threads: int = setting(0, "CPU threads for torch (0: torch's default, one per core)", minimum=0)

    # -- bookkeeping --------------------------------------------------------------------------
    seed: int = setting(0, "random seed (the same seed on CPU: identical weights)", minimum=0)
    device: str = setting("auto", "auto, cpu, cuda, cuda:1", metavar="DEVICE")
    eval_every: int = setting(1, "evaluate on the test split every N epochs (and after the last)", minimum=1)
    save_every: int = setting(0, "also save checkpoints/epoch_K.safetensors every N epochs (0: never)", minimum=0)
    out: str | None = setting(None, "run directory to create (default runs/MODEL-DATA)", metavar="DIR")
    quiet: bool = setting(False, "no progress bar or per-epoch lines, only the final summary")
    tensorboard: bool = setting(False, "also write TensorBoard logs to RUN_DIR/tensorboard")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name), "setting", hints))
        super().__post_init__()

    def check(self) -> None:
        _check_rules(self)

    # -- conversions --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "settings", strict: bool = False,
                  source: str | None = None) -> "TrainConfig":
        """Build from a mapping of field values; other keys are ignored unless ``strict``.

        Used to read a run's ``config.json`` (which also holds derived facts and versions).
        """
        return super().from_dict(values, where=source or where, strict=strict)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (each coerced and validated; tables merged, see :func:`apply_overrides`)."""
        return apply_overrides(self, changes)

    @property
    def augment_summary(self) -> str:
        parts = []
        if self.crop_padding:
            parts.append(f"{self.crop_padding}-px pad + random crop")
        if self.flip:
            parts.append("flip")
        if self.cutout:
            parts.append(f"cutout {self.cutout}")
        return ", ".join(parts) or "none"


FIELD_NAMES: tuple[str, ...] = TrainConfig.field_names()
_FIELD_HINTS: dict[str, Any] = typing.get_type_hints(TrainConfig)
TABLES = ("model_options", "data_options", "task_options")


# -- coercion and validation ----------------------------------------------------------------------
def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}; settings are: {', '.join(FIELD_NAMES)}")


def coerce(key: str, value: Any, where: str = "settings", hints: Mapping[str, Any] | None = None) -> Any:
    """Convert ``value`` to the type of setting ``key`` (strings from the command line included).

    The rules are :func:`reslab.settings.coerce`'s, from the field's type hint; a ConfigError
    names the key, the value and the expected type when it cannot.
    """
    hints = hints or _FIELD_HINTS
    if key not in hints:
        raise _unknown_key_error(key, where)
    try:
        return coerce_setting(hints[key], value, key)
    except SettingValueError as exc:
        expected = exc.expected
        if hints[key] == list[int]:
            expected = "a list of integers, e.g. [32000, 48000]"
        elif hints[key] == dict[str, Any]:
            expected = 'a table of options, e.g. {shortcut = "B"}'
        elif expected == "a whole number":
            expected = "an integer"
        raise ConfigError(f"{where}: {key}={value!r} is not valid; expected {expected}") from None


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"setting {key}={value!r} is not valid; expected {expected}")


def _check_rules(c: TrainConfig) -> None:
    """The rules that involve several settings, or a range the field's minimum cannot say."""
    if c.epochs is None and c.iterations is None:
        raise ConfigError("give the length of training: set epochs (e.g. --epochs 10) or iterations (--iterations 64000)")
    if c.epochs is not None and c.iterations is not None:
        raise ConfigError(f"set epochs ({c.epochs}) or iterations ({c.iterations}), not both")
    _check(c.batch_size % c.accumulate == 0, "accumulate", c.accumulate,
           f"a divisor of batch_size={c.batch_size} (each micro-batch holds batch_size / accumulate samples)")
    _check(math.isfinite(c.lr) and c.lr > 0, "lr", c.lr, "a number > 0")
    _check(0.0 <= c.momentum < 1.0, "momentum", c.momentum, "a number in [0, 1)")
    _check(not c.nesterov or c.momentum > 0, "nesterov", c.nesterov, "false when momentum is 0 (Nesterov needs momentum)")
    _check(not (c.freeze or c.freeze_bn or c.head_lr) or bool(c.init_from), "init_from", c.init_from,
           "a source of weights (reslab finetune SOURCE) when freeze, freeze_bn or head_lr is "
           "set: they fine-tune a network that starts from other weights")
    _check(all(m >= 0 for m in c.milestones), "milestones", c.milestones, "integers >= 0")
    _check(list(c.milestones) == sorted(c.milestones), "milestones", c.milestones, "increasing integers")
    _check(0.0 < c.gamma <= 1.0, "gamma", c.gamma, "a number in (0, 1]")
    _check(0.0 <= c.min_lr <= c.lr, "min_lr", c.min_lr, f"a number in [0, lr={c.lr}]")
    _check(0.0 <= c.onecycle_peak_at < 1.0, "onecycle_peak_at", c.onecycle_peak_at, "a fraction in [0, 1)")
    _check(0.0 <= c.warmup_until_error < 1.0, "warmup_until_error", c.warmup_until_error,
           "a training error in [0, 1), e.g. 0.8 (0 = a warm-up of fixed length)")
    _check(not c.warmup_until_error or (c.warmup > 0 and c.warmup_mode == "constant"), "warmup_until_error",
           c.warmup_until_error, "used with warmup_mode = 'constant' and warmup > 0 (the longest the warm-up may "
           "last), e.g. --warmup 5 --warmup-unit epochs --warmup-mode constant")
    _check(0.0 <= c.label_smoothing < 1.0, "label_smoothing", c.label_smoothing, "a number in [0, 1)")
    _check(0.0 < c.ema_decay < 1.0, "ema_decay", c.ema_decay, "a number in (0, 1), e.g. 0.999")
    _check(bool(c.model), "model", c.model, "a model name, e.g. resnet20")
    _check(bool(c.data), "data", c.data, "a dataset name, e.g. digits or cifar10")


# -- recipes and overrides ------------------------------------------------------------------------
def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``reslab/train/recipes/``."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.toml"))


def recipe_path(name: str | Path) -> Path:
    """The TOML file of recipe ``name`` (a shipped name, or a path to a .toml file)."""
    candidate = Path(name)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise ConfigError(f"recipe file {str(candidate)!r} does not exist")
        return candidate
    path = RECIPE_DIR / f"{name}.toml"
    if not path.is_file():
        close = difflib.get_close_matches(str(name), list_recipes(), n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown recipe {str(name)!r}{hint}; recipes are: {', '.join(list_recipes())}, "
                          "or a path to your own .toml file")
    return path


def load_recipe(name: str | Path) -> dict[str, Any]:
    """The settings a recipe file sets (validated keys, coerced values), without defaults."""
    path = recipe_path(name)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {str(path)!r} is not valid TOML: {exc}") from None
    raw.pop("description", None)
    where = f"recipe {path.stem!r}"
    values = {key: coerce(key, value, where) for key, value in raw.items()}
    values.setdefault("recipe", path.stem)
    return values


def recipe_description(name: str) -> str:
    """The one-line ``description`` of a shipped recipe."""
    raw = tomllib.loads(recipe_path(name).read_text(encoding="utf-8"))
    return str(raw.get("description", ""))


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` (``--set``) into a dict.

    Values are read as TOML when they parse (``true``, ``0.1``, ``[10, 20]``, ``"B"``), else
    kept as strings (``cosine``). Dotted keys set one entry of a table field:
    ``model_options.shortcut=B``, ``data_options.num_train=512``.
    """
    items = list(items)
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=0.2; settings are: {', '.join(FIELD_NAMES)}")
    out = parse_key_values(items, "--set", tables=TABLES, example="lr=0.2")
    for key in out:
        if key not in _FIELD_HINTS:
            raise _unknown_key_error(key, f"--set {key}=...")
    return out


def _merge(values: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(values)
    for key, value in overrides.items():
        if key not in _FIELD_HINTS:
            raise _unknown_key_error(key, "override")
        value = coerce(key, value, "override")
        if key in TABLES:
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    # A recipe gives one length, the user may give the other: the user's wins.
    if overrides.get("epochs") is not None and "iterations" not in overrides:
        values["iterations"] = None
    if overrides.get("iterations") is not None and "epochs" not in overrides:
        values["epochs"] = None
    return values


def apply_overrides(config: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A new config with ``overrides`` applied; table fields are merged, not replaced.

    Setting ``epochs`` clears ``iterations`` and vice versa (a recipe gives one, the user the
    other), unless both are given.
    """
    return TrainConfig(**_merge(config.to_dict(), overrides))


def resolve_config(recipe: str | Path | None = None, *, model: str | None = None, data: str | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Recipe (or, with none, the task's default one) + model/data + overrides → TrainConfig.

    Default recipe: the task's (:meth:`reslab.tasks.Task.default_recipe`): ``digits-quick`` for the
    digits data, ``cifar10-fast`` for other images, ``text-char`` for language models and
    ``shapes-unet`` for segmentation.
    """
    if recipe is None:
        from reslab.tasks import choose_task  # noqa: PLC0415 - the tasks register when reslab.tasks loads

        task = (overrides or {}).get("task")
        recipe = choose_task(model or TrainConfig.default("model"), data or "", task).default_recipe(data or "")
    values = load_recipe(recipe) if recipe is not None else {}
    if model is not None:
        values["model"] = model
    if data is not None:
        values["data"] = data
    return TrainConfig(**_merge(values, dict(overrides or {})))


def config_differences(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ: name -> (old, new)."""
    a, b = old.to_dict(), new.to_dict()
    if a["task"] is None or b["task"] is None:  # not chosen yet: the engine chooses the same from model and data
        a["task"] = b["task"] = a["task"] or b["task"]
    return {k: (a[k], b[k]) for k in FIELD_NAMES if a[k] != b[k]}


__all__ = [
    "TrainConfig", "FIELD_NAMES", "RESUMABLE_KEYS", "SCHEDULES", "list_recipes", "load_recipe",
    "recipe_description", "parse_overrides", "apply_overrides", "resolve_config", "config_differences",
]
