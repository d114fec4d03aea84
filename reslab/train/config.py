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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from reslab.errors import ConfigError
from reslab.settings import SettingValueError, parse_key_values
from reslab.settings import coerce as coerce_setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

RECIPE_DIR = Path(__file__).with_name("recipes")

SCHEDULES = ("constant", "step", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adamw")
UNITS = ("iterations", "epochs")
WARMUP_MODES = ("constant", "linear")

#: Settings that may change when a run is resumed: they do not alter what has been computed so
#: far. ``epochs``/``iterations`` extend (or shorten) the run; schedules defined by the run's
#: length (cosine, one-cycle) are then recomputed for the new length.
RESUMABLE_KEYS = frozenset({
    "epochs", "iterations", "eval_every", "save_every", "quiet", "tensorboard", "device", "compile",
    "data_dir", "download", "eval_batch_size", "out", "threads",
})


@dataclass
class TrainConfig:
    """Every setting of a training run (see ``docs/training.md`` for each recipe's values).

    Length: give ``epochs`` or ``iterations`` (optimizer steps); with ``iterations`` the last
    epoch may be partial. ``batch_size`` is the *global* batch (split over ranks and
    ``accumulate`` micro-batches).
    """

    # -- what to train on what ---------------------------------------------------------------
    model: str = "resnet20"
    model_options: dict[str, Any] = field(default_factory=dict)
    data: str = "cifar10"
    data_dir: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    download: bool = False
    recipe: str | None = None  # the recipe these settings started from (informational)

    # -- transfer learning (reslab finetune; see reslab/train/transfer.py) ----------------------
    init_from: str | None = None  # a run, a reslab checkpoint or a state-dict file: every tensor but the head
    freeze: list[str] = field(default_factory=list)  # modules kept fixed: "stem", "layer1", "layer2.0", ...
    freeze_bn: bool = False  # every BN layer keeps the source's statistics and affine parameters
    head_lr: float = 0.0  # peak lr of the new head (the schedule scales it like lr); 0 = the same as lr

    # -- length and batch ---------------------------------------------------------------------
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    eval_batch_size: int = 500
    accumulate: int = 1  # micro-batches per step: same gradient, 1/accumulate the memory

    # -- optimizer ----------------------------------------------------------------------------
    optimizer: str = "sgd"  # "sgd" (momentum, nesterov) or "adamw" (betas 0.9/0.99; transformers, recurrent nets)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    no_wd_on_bn_and_bias: bool = False
    grad_clip: float = 0.0  # max global gradient norm; 0 = off

    # -- learning-rate schedule ---------------------------------------------------------------
    schedule: str = "step"
    milestones: list[int] = field(default_factory=list)  # step: where lr is multiplied by gamma
    milestone_unit: str = "iterations"
    gamma: float = 0.1
    min_lr: float = 0.0  # cosine and one-cycle end here
    onecycle_peak_at: float = 0.25  # fraction of training at which one-cycle reaches lr
    onecycle_start_factor: float = 0.1  # one-cycle starts at lr * this
    warmup: int = 0  # length of the warm-up (0 = none)
    warmup_unit: str = "iterations"
    warmup_lr: float = 0.0  # lr at the start of the warm-up
    warmup_mode: str = "linear"  # "constant": warmup_lr throughout; "linear": ramp to the schedule
    warmup_min_depth: int = 0  # warm up only models at least this deep (weight layers)
    # He et al. 2015 (§4.2): "0.01 until the training error is below 80%". > 0: a constant warm-up
    # ends after the first epoch whose training error is below this; `warmup` is its longest.
    warmup_until_error: float = 0.0

    # -- regularisation -----------------------------------------------------------------------
    label_smoothing: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0
    test_flip: bool = False  # also evaluate with test-time flips (mean logits of image and mirror)

    # -- speed --------------------------------------------------------------------------------
    bf16: bool = False  # bf16 autocast on CUDA or a CPU with bf16 units; float32 (with a note) elsewhere
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only; torch has no CPU SyncBatchNorm)
    threads: int = 0  # CPU threads for torch ops (torch.set_num_threads); 0 = torch's default

    # -- bookkeeping --------------------------------------------------------------------------
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1  # epochs between test evaluations (the last epoch is always evaluated)
    save_every: int = 0  # epochs between epoch_{k:04d}.safetensors snapshots; 0 = never
    out: str | None = None  # run directory; default runs/{model}-{data}
    quiet: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        validate(self)

    # -- conversions --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every field."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "settings") -> "TrainConfig":
        """Build from a mapping of field values; keys that are not fields are ignored.

        Used to read a run's ``config.json`` (which also holds derived values and versions).
        """
        known = {f.name for f in fields(cls)}
        chosen = {k: coerce(k, v, source) for k, v in values.items() if k in known}
        return cls(**chosen)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (each coerced and validated)."""
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


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
_FIELD_HINTS: dict[str, Any] = typing.get_type_hints(TrainConfig)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- coercion and validation ----------------------------------------------------------------------
def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}; settings are: {', '.join(FIELD_NAMES)}")


def coerce(key: str, value: Any, where: str = "settings") -> Any:
    """Convert ``value`` to the type of field ``key`` (strings from the command line included).

    The rules are :func:`reslab.settings.coerce`'s, from the field's type hint; a ConfigError
    names the key and the expected type when it cannot.
    """
    if key not in _FIELD_HINTS:
        raise _unknown_key_error(key, where)
    try:
        return coerce_setting(_FIELD_HINTS[key], value, key)
    except SettingValueError as exc:
        expected = exc.expected
        if _FIELD_HINTS[key] == list[int]:
            expected = "a list of integers, e.g. [32000, 48000]"
        elif _FIELD_HINTS[key] == dict[str, Any]:
            expected = 'a table of options, e.g. {shortcut = "B"}'
        elif expected == "a whole number":
            expected = "an integer"
        raise ConfigError(f"{where}: {key}={value!r} is not valid; expected {expected}") from None


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ConfigError(f"setting {key}={value!r} is not valid; expected {expected}")


def validate(config: TrainConfig) -> None:
    """Check every field's type and range; raise ConfigError naming the first bad one."""
    for f in fields(config):
        value = getattr(config, f.name)
        coerced = coerce(f.name, value, "setting")
        if coerced != value or type(coerced) is not type(value):
            setattr(config, f.name, coerced)
    c = config
    if c.epochs is None and c.iterations is None:
        raise ConfigError("give the length of training: set epochs (e.g. --epochs 10) or iterations (--set iterations=64000)")
    if c.epochs is not None and c.iterations is not None:
        raise ConfigError(f"set epochs ({c.epochs}) or iterations ({c.iterations}), not both")
    if c.epochs is not None:
        _check(c.epochs >= 1, "epochs", c.epochs, "an integer >= 1")
    if c.iterations is not None:
        _check(c.iterations >= 1, "iterations", c.iterations, "an integer >= 1")
    _check(c.batch_size >= 1, "batch_size", c.batch_size, "an integer >= 1")
    _check(c.eval_batch_size >= 1, "eval_batch_size", c.eval_batch_size, "an integer >= 1")
    _check(c.accumulate >= 1, "accumulate", c.accumulate, "an integer >= 1")
    _check(c.batch_size % c.accumulate == 0, "accumulate", c.accumulate,
           f"a divisor of batch_size={c.batch_size} (each micro-batch holds batch_size / accumulate images)")
    _check(math.isfinite(c.lr) and c.lr > 0, "lr", c.lr, "a number > 0")
    _check(0.0 <= c.momentum < 1.0, "momentum", c.momentum, "a number in [0, 1)")
    _check(not c.nesterov or c.momentum > 0, "nesterov", c.nesterov, "false when momentum is 0 (Nesterov needs momentum)")
    _check(math.isfinite(c.head_lr) and c.head_lr >= 0, "head_lr", c.head_lr, "a number >= 0 (0 = the same as lr)")
    _check(not (c.freeze or c.freeze_bn or c.head_lr) or bool(c.init_from), "init_from", c.init_from,
           "a source of weights (reslab finetune SOURCE, or --set init_from=PATH) when freeze, freeze_bn or head_lr is "
           "set: they fine-tune a network that starts from other weights")
    _check(math.isfinite(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay, "a number >= 0")
    _check(math.isfinite(c.grad_clip) and c.grad_clip >= 0, "grad_clip", c.grad_clip, "a number >= 0 (0 = off)")
    _check(c.schedule in SCHEDULES, "schedule", c.schedule, "one of " + ", ".join(SCHEDULES))
    _check(c.optimizer in OPTIMIZERS, "optimizer", c.optimizer, "one of " + ", ".join(OPTIMIZERS))
    _check(all(m >= 0 for m in c.milestones), "milestones", c.milestones, "integers >= 0")
    _check(list(c.milestones) == sorted(c.milestones), "milestones", c.milestones, "increasing integers")
    _check(c.milestone_unit in UNITS, "milestone_unit", c.milestone_unit, "one of " + ", ".join(UNITS))
    _check(0.0 < c.gamma <= 1.0, "gamma", c.gamma, "a number in (0, 1]")
    _check(0.0 <= c.min_lr <= c.lr, "min_lr", c.min_lr, f"a number in [0, lr={c.lr}]")
    _check(0.0 <= c.onecycle_peak_at < 1.0, "onecycle_peak_at", c.onecycle_peak_at, "a fraction in [0, 1)")
    _check(0.0 <= c.onecycle_start_factor <= 1.0, "onecycle_start_factor", c.onecycle_start_factor, "a number in [0, 1]")
    _check(c.warmup >= 0, "warmup", c.warmup, "an integer >= 0 (0 = no warm-up)")
    _check(c.warmup_unit in UNITS, "warmup_unit", c.warmup_unit, "one of " + ", ".join(UNITS))
    _check(math.isfinite(c.warmup_lr) and c.warmup_lr >= 0, "warmup_lr", c.warmup_lr, "a number >= 0")
    _check(c.warmup_mode in WARMUP_MODES, "warmup_mode", c.warmup_mode, "one of " + ", ".join(WARMUP_MODES))
    _check(c.warmup_min_depth >= 0, "warmup_min_depth", c.warmup_min_depth, "an integer >= 0")
    _check(0.0 <= c.warmup_until_error < 1.0, "warmup_until_error", c.warmup_until_error,
           "a training error in [0, 1), e.g. 0.8 (0 = a warm-up of fixed length)")
    _check(not c.warmup_until_error or (c.warmup > 0 and c.warmup_mode == "constant"), "warmup_until_error",
           c.warmup_until_error, "used with warmup_mode = 'constant' and warmup > 0 (the longest the warm-up may "
           "last), e.g. --set warmup=5 --set warmup_unit=epochs --set warmup_mode=constant")
    _check(0.0 <= c.label_smoothing < 1.0, "label_smoothing", c.label_smoothing, "a number in [0, 1)")
    _check(0.0 < c.ema_decay < 1.0, "ema_decay", c.ema_decay, "a number in (0, 1), e.g. 0.999")
    _check(c.crop_padding >= 0, "crop_padding", c.crop_padding, "an integer >= 0 (0 = no random crop)")
    _check(c.cutout >= 0, "cutout", c.cutout, "an integer >= 0 (0 = no cutout)")
    _check(c.eval_every >= 1, "eval_every", c.eval_every, "an integer >= 1")
    _check(c.save_every >= 0, "save_every", c.save_every, "an integer >= 0 (0 = never)")
    _check(c.threads >= 0, "threads", c.threads, "an integer >= 0 (0 = torch's default)")
    _check(c.seed >= 0, "seed", c.seed, "an integer >= 0")
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
    out = parse_key_values(items, "--set", tables=("model_options", "data_options"), example="lr=0.2")
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
        if key in ("model_options", "data_options"):
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
    """Recipe (or, with none, the default one for ``data``) + model/data + overrides → TrainConfig.

    Default recipe: ``digits-quick`` for the digits data, ``text-char`` for text, ``cifar10-fast`` otherwise.
    """
    if recipe is None:
        recipe = {"digits": "digits-quick", "text": "text-char"}.get((data or "").lower(), "cifar10-fast")
    values = load_recipe(recipe)
    if model is not None:
        values["model"] = model
    if data is not None:
        values["data"] = data
    return TrainConfig(**_merge(values, dict(overrides or {})))


def config_differences(old: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ: name -> (old, new)."""
    a, b = old.to_dict(), new.to_dict()
    return {k: (a[k], b[k]) for k in FIELD_NAMES if a[k] != b[k]}


__all__ = [
    "TrainConfig", "FIELD_NAMES", "RESUMABLE_KEYS", "SCHEDULES", "list_recipes", "load_recipe",
    "recipe_description", "parse_overrides", "apply_overrides", "resolve_config", "config_differences",
]
