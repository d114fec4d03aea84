"""Hyperparameter search: an Optuna study whose trials are reslab runs, trained through any launcher.

Each trial is one run directory, ``EXP_DIR/trials/<model>-<run_id>``: the trial's parameters are
training settings, so the run's id (a hash of its settings, seed included) names it, and a trial
asked again with the same parameters finds its run (finished: reused; interrupted: resumed)::

    EXP_DIR/study.db        the Optuna study (default storage; --storage URL for a shared database)
    EXP_DIR/trials/...      one run directory per distinct trial
    EXP_DIR/search.json     settings, command, every trial (number, params, state, value, run) and the best
    EXP_DIR/settings.json   the settings and the command that (re)makes the search
    EXP_DIR/runs.json       the experiment's index of runs (reslab sweep status DIR)

The driver asks the study for trials (ask/tell), keeps up to ``launcher.parallel`` of them in
flight, reports each running trial's metric per epoch (read from its ``metrics.jsonl``) to the
pruner and, when the pruner says so, writes the run's ``stop-request`` file: the trainer stops within
a few steps, with a checkpoint, and the trial is told PRUNED. A run whose loss became
non-finite is a diverged trial: PRUNED too (with its last reported value), and marked ``diverged``.

Resume: the same command on the same EXP_DIR continues the study. Trials left RUNNING by a driver
that died are marked FAIL and their parameters enqueued again; the new trial has the same settings,
hence the same run directory, and resumes from its checkpoint. ``trials=N`` is the total number of
COMPLETE + PRUNED trials of the study, never counted twice.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.experiments.common import (
    DONE_POLL_S,
    ExperimentResult,
    Message,
    _one_line,
    check_runs,
    plan_run,
    run_id,
    stderr_printer,
    write_settings_file,
)
from reslab.experiments.index import (
    FAILED,
    FINISHED,
    PRUNED,
    STOPPED,
    SUBMITTED,
    ExperimentLock,
    RunIndex,
    announce_start,
)
from reslab.experiments.launch.base import Launcher, LaunchSettings, make_launcher
from reslab.experiments.runs import default_threads
from reslab.settings import key_value_arguments, setting, to_arguments
from reslab.store import rundir
from reslab.store.jsonfiles import write_json
from reslab.store.lock import RunDirLockedError, check_unlocked, lock_holder
from reslab.train import TrainConfig, resolve_config

SUMMARY_FILE = "search.json"
STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
FORMAT = 1
INSTALL_HINT = "reslab search needs optuna: pip install 'reslab[search]'"
#: Per-epoch metrics a search may optimise (the trainer's metrics.jsonl columns).
METRICS = ("test_loss", "test_error", "train_loss", "train_error", "test_flip_loss", "test_flip_error",
           "ema_test_loss", "ema_test_error")
KINDS = ("loguniform", "uniform", "int", "intlog", "choice")
EXAMPLES = {"loguniform": "lr=loguniform:1e-3:1", "uniform": "weight_decay=uniform:0:1e-3",
            "int": "batch_size=int:32:256", "intlog": "batch_size=intlog:32:256", "choice": "depth=choice:20,56,110"}
SPACE_EXAMPLE = "lr=loguniform:1e-3:1, weight_decay=uniform:0:1e-3, depth=choice:20,56,110, batch_size=int:32:256"
#: Training settings a search may not vary: they say what is trained on, where, or how it prints.
NOT_SEARCHABLE = ("model", "model_options", "data", "data_options", "data_dir", "download", "task", "task_options",
                  "recipe", "init_from", "freeze", "out", "quiet", "threads", "device", "tensorboard", "compile",
                  "sync_bn", "progress", "iterations", "eval_every", "save_every", "eval_batch_size", "milestones")
#: What people call some settings.
ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "layers": "depth",
           "smoothing": "label_smoothing"}
#: Seconds between looks at the running trials' metrics files.
METRICS_POLL_S = 0.25
#: A run that stopped because its loss became non-finite (the trainer's TrainingError says so).
DIVERGED_TEXT = "training loss became"


def _optuna():
    try:
        import optuna  # noqa: PLC0415 - optional: `reslab --help` and the other commands need it not
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -- the search space -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One dimension of the space: ``key=kind:low:high`` or ``key=choice:a,b,c``."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()
    text: str = field(default="", compare=False)  # as the user wrote it, for messages

    @property
    def given(self) -> str:
        return self.text or self.spec

    @property
    def spec(self) -> str:
        if self.kind == "choice":
            return "choice:" + ",".join(str(c) for c in self.choices)
        return f"{self.kind}:{self.low}:{self.high}"

    def distribution(self):
        distributions = _optuna().distributions
        if self.kind == "choice":
            return distributions.CategoricalDistribution(list(self.choices))
        if self.kind in ("int", "intlog"):
            return distributions.IntDistribution(int(self.low), int(self.high), log=self.kind == "intlog")
        return distributions.FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")

    def values(self) -> list:
        """The values a pre-flight check builds configs with: the bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def _space_error(key: str, spec: str, why: str, example: str | None = None) -> ConfigError:
    kind = spec.split(":", 1)[0] if isinstance(spec, str) else ""
    example = example or EXAMPLES.get(kind, SPACE_EXAMPLE if key not in ("depth", "lr") else EXAMPLES[
        "choice" if key == "depth" else "loguniform"])
    return ConfigError(f"--space {key}={spec}: {why}; e.g. --space {example}")


def _number(text: str, key: str, spec: str, integer: bool) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise _space_error(key, spec, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _space_error(key, spec, f"{text!r} is not a finite number")
    if integer:
        if not value.is_integer():
            raise _space_error(key, spec, f"{text!r} is not a whole number")
        return int(value)
    return value


def _choice(text: str) -> Any:
    from reslab.settings import parse_value  # noqa: PLC0415

    value = parse_value(text.strip())
    return value


def parse_param(key: str, spec: Any) -> Param:
    """``("lr", "loguniform:1e-3:1")`` → a :class:`Param`; ConfigError (one line, with an example) otherwise."""
    key = str(key).strip()
    if not isinstance(spec, str):
        raise _space_error(key, str(spec), "give the distribution as a string, KIND:LOW:HIGH or choice:A,B,C")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise _space_error(key, spec, f"unknown distribution {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "choice":
        items = [item for item in rest.split(",") if item.strip()]
        if not items:
            raise _space_error(key, spec, "give at least one value after choice:")
        values = tuple(_choice(item) for item in items)
        if len(set(map(repr, values))) != len(values):
            raise _space_error(key, spec, "a value is listed twice")
        return Param(key, kind, choices=values, text=spec)
    parts = rest.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise _space_error(key, spec, f"expected {kind}:LOW:HIGH")
    integer = kind in ("int", "intlog")
    low, high = (_number(p.strip(), key, spec, integer) for p in parts)
    if low > high:
        raise _space_error(key, spec, f"the low bound {low} is above the high bound {high}")
    if kind in ("loguniform", "intlog") and low <= 0:
        raise _space_error(key, spec, f"a log scale needs positive bounds, got {low}")
    return Param(key, kind, low, high, text=spec)


def parse_space(space: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Param]:
    """``{"lr": "loguniform:1e-3:1"}`` or ``["lr=loguniform:1e-3:1", …]`` → ``{key: Param}``."""
    if space is None:
        return {}
    if not isinstance(space, Mapping):
        pairs = {}
        for item in space:
            if "=" not in str(item):
                raise ConfigError(f"--space {item!r}: expected KEY=SPEC, e.g. --space {EXAMPLES['loguniform']}")
            key, _, spec = str(item).partition("=")
            pairs[key.strip()] = spec.strip()
        space = pairs
    return {str(key).strip(): parse_param(key, spec) for key, spec in space.items()}


def read_space_file(path: str | Path) -> dict[str, str]:
    """The ``[space]`` table of a TOML file: ``lr = "loguniform:1e-3:1"`` lines."""
    from reslab.settings import tomllib  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--space-file {path}: no such file; give a TOML file with a [space] table, e.g. "
                          f"lr = \"loguniform:1e-3:1\"")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--space-file {path}: not valid TOML ({_one_line(error)})") from None
    table = data.get("space")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"--space-file {path}: no [space] table; write e.g. [space] then "
                          f"lr = \"loguniform:1e-3:1\"")
    return {str(k): v for k, v in table.items()}


def model_for_depth(model: str, depth: Any) -> str:
    """The model of ``model``'s family with ``depth`` layers: resnet20 → resnet56, cifar_plain8 → cifar_plain14."""
    from reslab.experiments.degradation import twin_models, validate_depths  # noqa: PLC0415
    from reslab.models import list_models  # noqa: PLC0415

    match = re.fullmatch(r"(.*?[a-z_])(\d+)", model)
    if match is None:
        raise ConfigError(f"--space depth: the model {model!r} names no depth to vary; give a model such as "
                          "resnet20 or cifar_plain20")
    prefix = match.group(1)
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError(f"--space depth: {depth!r} is not a whole number; e.g. --space {EXAMPLES['choice']}")
    if prefix in ("resnet", "plain", "cifar_resnet", "cifar_plain"):
        try:
            validate_depths([depth])
        except ConfigError as error:
            raise ConfigError("--space depth: " + str(error).removeprefix("--depths: ")) from None
        residual, plain = twin_models(depth)
        if prefix.startswith("cifar_"):
            return f"{prefix}{depth}"
        return residual if prefix == "resnet" else plain
    name = f"{prefix}{depth}"
    if name not in list_models(name):
        raise ConfigError(f"--space depth: {model}'s family has no model {name}; give depths that exist "
                          f"(reslab train --list-models)")
    return name


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSettings(LaunchSettings):
    """Every option of :func:`run_search` and ``reslab search``."""

    model: str = setting("resnet20", "the model (with --space depth=…, its family: resnet20 → resnet56)",
                         cli=False)
    data: str = setting("digits", "dataset: digits (embedded), cifar10, cifar100, synthetic, imagefolder")
    data_dir: str | None = setting(None, "where the dataset's files are", metavar="DIR")
    recipe: str | None = setting(None, "training recipe name or .toml path (default: the task's, digits-quick "
                                       "for the digits)", metavar="NAME|FILE")
    space: dict[str, Any] = setting(default_factory=dict, help="KEY=SPEC", cli=False)  # --space, repeatable
    space_file: str | None = setting(None, "a TOML file with a [space] table of KEY = \"SPEC\" strings (--space "
                                           "adds to it and wins)", metavar="FILE")
    trials: int = setting(20, "trials in total (COMPLETE + PRUNED, counting those of earlier commands)", minimum=1,
                          metavar="N")
    sampler: Literal["tpe", "random", "grid"] = setting("tpe", "how trials are chosen: tpe, random or grid (grid: "
                                                               "choice spaces only)")
    pruner: Literal["median", "none"] = setting("median", "stop a trial whose metric is worse than the median of "
                                                          "earlier trials at the same epoch (median), or never")
    metric: str = setting("test_loss", "the objective: a per-epoch metric of the run, its final value",
                          metavar="NAME")
    direction: Literal["minimize", "maximize"] = setting("minimize", "minimize or maximize the metric")
    seed: int = setting(0, "seed of the sampler (a run's own seed is a training setting: --set seed=S)", minimum=0)
    storage: str | None = setting(None, "the study's storage: a database URL many machines share (postgresql://…, "
                                        "mysql://…, sqlite:///…) or journal:FILE (default: sqlite in --out)",
                                  metavar="URL")
    study_name: str | None = setting(None, "the study's name in the storage (default: the --out folder's name)",
                                     metavar="NAME")
    epochs: int | None = setting(None, "epochs per trial (replaces the recipe's length)", minimum=1)
    startup_trials: int = setting(5, "tpe: trials sampled at random before it models the results", minimum=0,
                                  metavar="N")
    prune_startup: int = setting(3, "median pruner: finished trials before it prunes", minimum=0, metavar="N")
    prune_warmup: int = setting(1, "median pruner: epochs a trial trains before it may be pruned", minimum=0,
                                metavar="E")
    overrides: dict[str, Any] = setting(default_factory=dict, help="training settings, the same for every trial",
                                        cli=False)  # the CLI's --set KEY=VALUE
    jobs: int = setting(1, "local launcher: trials trained at the same time, each in its own process", minimum=1)
    out: str | None = setting(None, "the search's directory (default runs/search-MODEL-DATA)", metavar="DIR")
    quiet: bool = setting(False, "print only the summary table")

    def check(self) -> None:
        super().check()
        if self.metric not in METRICS:
            raise ConfigError(f"--metric {self.metric}: not a per-epoch metric of a run; choose one of "
                              f"{', '.join(METRICS)}")
        fixed = [key for key in ("model", "data", "out") if key in self.overrides]
        if fixed:
            raise ConfigError(f"--set {', '.join(fixed)}: the search sets these itself; use MODEL, --data and --out")

    def identity(self) -> dict[str, Any]:
        """What the study measures: a study resumed with other values of these would mix two searches."""
        return {"model": self.model, "data": self.data, "recipe": self.recipe, "metric": self.metric,
                "direction": self.direction, "epochs": self.epochs, "overrides": dict(sorted(self.overrides.items())),
                "space": {k: p.spec for k, p in sorted(self.params().items())}}

    def params(self) -> dict[str, Param]:
        space = dict(read_space_file(self.space_file)) if self.space_file else {}
        space.update(self.space or {})
        return parse_space(space)

    def command(self, experiment_dir: Path) -> str:
        resolved = self.replace(out=str(experiment_dir))
        arguments = to_arguments(resolved, base=type(self)(), skip=("space_file",), always=("data", "trials"))
        if self.slurm_option:
            arguments += key_value_arguments(self.slurm_option, "--slurm-option")
        for key, param in sorted(self.params().items()):
            arguments += ["--space", f"{key}={param.spec}"]
        if self.overrides:
            arguments += key_value_arguments(self.overrides)
        return shlex.join(["reslab", "search", self.model, *arguments])


def _storage_label(url: str) -> str:
    """The URL without its password (for files and messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def check_storage_url(url: str) -> None:
    if url.startswith("journal:"):
        if not url[len("journal:"):].strip("/"):
            raise ConfigError(f"--storage {url}: give the journal file, e.g. --storage journal:runs/study.log")
        return
    if not re.match(r"^[a-z][a-z0-9+]*://", url):
        raise ConfigError(f"--storage {url}: not a storage URL; give a database URL (postgresql://user@host/db, "
                          "sqlite:///path/study.db) or journal:FILE (Optuna's journal file)")


def open_storage(url: str):
    optuna = _optuna()
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415

            path = Path(url[len("journal:"):].removeprefix("//"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except (ImportError, ModuleNotFoundError) as error:
        raise ConfigError(f"--storage {_storage_label(url)}: {_one_line(error)} (install the database's driver)") \
            from None
    except Exception as error:  # noqa: BLE001 - sqlalchemy's and optuna's errors, as one line
        raise ConfigError(f"--storage {_storage_label(url)}: cannot open it: {_one_line(error)}") from None


# -- one search -----------------------------------------------------------------------------------
@dataclass
class Search:
    """One study and its experiment directory (several share a driver in the lr-depth experiment)."""

    settings: SearchSettings
    experiment_dir: Path
    params: dict[str, Param]
    threads: int | None = None
    label: str = ""
    study: Any = None
    storage_url: str = ""
    command: str | None = None
    index: RunIndex | None = None
    _storage: Any = None

    @classmethod
    def prepare(cls, settings: SearchSettings, experiment_dir: Path, *, threads: int | None = None,
                label: str = "") -> "Search":
        """Parse and check everything (space, settings of every corner of the space, sampler) — writes nothing."""
        params = settings.params()
        if not params:
            raise ConfigError(f"give the search space: --space KEY=SPEC (repeatable) or --space-file FILE, e.g. "
                              f"--space {EXAMPLES['loguniform']}")
        search = cls(settings, Path(experiment_dir), params, threads, label or Path(experiment_dir).name)
        search._check_keys()
        if settings.sampler == "grid":
            loose = [k for k, p in params.items() if p.kind != "choice"]
            if loose:
                raise ConfigError(f"--sampler grid: --space {loose[0]}={params[loose[0]].given} is not a list of "
                                  f"values; a grid needs choice spaces, e.g. --space {EXAMPLES['choice']}, or use "
                                  "--sampler tpe/random")
            size = math.prod(len(p.choices) for p in params.values())
            if settings.trials > size:
                raise ConfigError(f"--trials {settings.trials}: the grid has only {size} points; give --trials "
                                  f"{size} or fewer")
        if settings.storage is not None:
            check_storage_url(settings.storage)
            if not settings.storage.startswith("journal:"):
                search._storage = open_storage(settings.storage)  # a database that is not there fails here
        search.check_configs()
        return search

    def _check_keys(self) -> None:
        names = set(TrainConfig.field_names())
        for key, param in self.params.items():
            if key == "depth":
                if param.kind != "choice":
                    raise _space_error(key, param.given, "depth picks a model: give a list of depths")
                for value in param.choices:
                    model_for_depth(self.settings.model, value)
                continue
            if key not in names or key in NOT_SEARCHABLE:
                import difflib  # noqa: PLC0415

                close = [ALIASES[key]] if key in ALIASES else difflib.get_close_matches(
                    key, sorted(names - set(NOT_SEARCHABLE) | {"depth"}), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                why = ("a setting a search may not vary" if key in NOT_SEARCHABLE else "not a training setting")
                raise _space_error(key, param.given, f"{key!r} is {why}{hint}; search over training settings such "
                                   "as lr, weight_decay, label_smoothing, batch_size, epochs, or depth")
            if key in self.settings.overrides:
                raise _space_error(key, param.given, f"--set {key} fixes it too; give one or the other")
            default = TrainConfig.default(key)
            if isinstance(default, bool) and param.kind != "choice":
                raise _space_error(key, param.given, f"{key} is true or false: give choice:true,false")
            if isinstance(default, int) and not isinstance(default, bool) and param.kind in ("uniform", "loguniform"):
                raise _space_error(key, param.given, f"{key} is a whole number: give int:LOW:HIGH, intlog:LOW:HIGH "
                                   "or choice:A,B", example=f"{key}=int:{max(1, int(default) // 2)}:{int(default) * 2 or 8}")

    def config_for(self, params: Mapping[str, Any]) -> TrainConfig:
        """The trial's TrainConfig: recipe + model (its depth) + --set + the trial's parameters; ``out`` in trials/."""
        settings = self.settings
        values = dict(settings.overrides)
        if settings.epochs is not None:
            values["epochs"] = settings.epochs
        if settings.data_dir is not None:
            values["data_dir"] = settings.data_dir
        values.update({k: v for k, v in params.items() if k != "depth"})
        values["quiet"] = True
        if self.threads is not None and "threads" not in settings.overrides:
            values["threads"] = self.threads
        model = model_for_depth(settings.model, params["depth"]) if "depth" in params else settings.model
        config = resolve_config(settings.recipe, model=model, data=settings.data, overrides=values)
        out = self.experiment_dir / TRIALS_DIR / f"{model}-{run_id(config)}"
        return config.replace(out=str(out))

    def check_configs(self) -> None:
        """Every corner of the space builds a config and meets its data and model (before anything is written)."""
        first = {k: p.values()[0] for k, p in self.params.items()}
        configs: dict[str, TrainConfig] = {}
        for key, param in self.params.items():
            for value in param.values():
                params = {**first, key: value}
                try:
                    config = self.config_for(params)
                except ConfigError as error:
                    raise _space_error(key, param.given, f"{key}={value!r} is not valid: {error}") from None
                configs.setdefault(config.out, config)
        try:
            check_runs(list(configs.values()))
        except ConfigError as error:
            raise ConfigError(f"--space: a trial could not train: {error}") from None
        for config in configs.values():
            plan_run(config)  # a run directory holding other settings fails here

    # -- the study ---------------------------------------------------------------------------------
    def default_storage(self) -> str:
        return f"sqlite:///{(self.experiment_dir / STUDY_FILE).resolve()}"

    def open(self, say: Message) -> None:
        """Create or load the study (the experiment directory exists and is locked), then recover dead trials."""
        optuna = _optuna()
        settings = self.settings
        self.storage_url = settings.storage or self.default_storage()
        storage = self._storage if self._storage is not None else open_storage(self.storage_url)
        name = settings.study_name or self.experiment_dir.resolve().name
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=settings.direction,
                                        load_if_exists=True)
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"study {name!r} in {_storage_label(self.storage_url)}: {_one_line(error)}") from None
        identity = self.settings.identity()
        saved = study.user_attrs.get("reslab_search")
        if saved is None:
            if study.trials:
                raise ConfigError(f"study {name!r} in {_storage_label(self.storage_url)} has trials reslab did not "
                                  "make; give another --study-name")
            study.set_user_attr("reslab_search", identity)
        elif saved != identity:
            changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            listing = ", ".join(f"{k}: {saved.get(k)!r} there, {identity.get(k)!r} asked" for k in changed)
            raise ConfigError(f"study {name!r} ({self.experiment_dir}) is a search with other settings ({listing}); "
                              "give the same settings to continue it, or another --out / --study-name")
        if study.direction.name.lower() != settings.direction:
            raise ConfigError(f"study {name!r} was made to {study.direction.name.lower()}; give --direction "
                              f"{study.direction.name.lower()}")
        self.study = study
        # A sampler seeded the same way as before would propose the same parameters again.
        study.sampler = self._sampler(settings.seed + len(study.trials))
        study.pruner = self._pruner()
        self.recover(say)

    def _sampler(self, seed: int):
        samplers = _optuna().samplers
        settings = self.settings
        if settings.sampler == "grid":
            return _grid_sampler()({k: list(p.choices) for k, p in self.params.items()}, seed=seed)
        if settings.sampler == "random":
            return samplers.RandomSampler(seed=seed)
        return samplers.TPESampler(seed=seed, n_startup_trials=settings.startup_trials)

    def _pruner(self):
        pruners = _optuna().pruners
        if self.settings.pruner == "none":
            return pruners.NopPruner()
        return pruners.MedianPruner(n_startup_trials=self.settings.prune_startup,
                                    n_warmup_steps=self.settings.prune_warmup)

    def owns(self, trial) -> bool:
        where = trial.user_attrs.get("experiment_dir")
        if where is None:
            return self.settings.storage is None  # the study lives in this directory: every trial is ours
        return where == str(self.experiment_dir.resolve())

    def recover(self, say: Message) -> None:
        """Trials this directory left RUNNING (its driver died): FAIL, and their parameters enqueued again."""
        TrialState = _optuna().trial.TrialState
        waiting = [t.params for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not self.owns(trial):
                continue
            self.study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            if trial.params and len(trial.params) == len(self.params) and trial.params not in waiting:
                self.study.enqueue_trial(dict(trial.params), user_attrs={"resumes_trial": trial.number})
                waiting.append(trial.params)
                say(f"{self.label}: trial {trial.number} was interrupted; its run continues in a new trial")

    def counts(self) -> tuple[int, int]:
        """(trials done: COMPLETE + PRUNED, trials RUNNING) in the study."""
        TrialState = _optuna().trial.TrialState
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                               TrialState.RUNNING))
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        return len(trials) - running, running

    def room(self) -> int:
        done, running = self.counts()
        return self.settings.trials - done - running

    def ask(self):
        return self.study.ask({k: p.distribution() for k, p in self.params.items()})

    # -- files -------------------------------------------------------------------------------------
    def trial_records(self) -> list[dict[str, Any]]:
        records = []
        for trial in self.study.get_trials(deepcopy=False):
            value = trial.value if trial.values else None
            if value is None and trial.intermediate_values:
                value = trial.intermediate_values[max(trial.intermediate_values)]
            run = trial.user_attrs.get("run_dir")
            records.append({
                "number": trial.number, "state": trial.state.name, "params": dict(trial.params),
                "value": _finite(value), "epochs": len(trial.intermediate_values),
                "run": _relative(run, self.experiment_dir) if run else None,
                **{k: trial.user_attrs[k] for k in ("diverged", "error", "resumes_trial", "interrupted")
                   if k in trial.user_attrs},
            })
        return records

    def best(self) -> dict[str, Any] | None:
        try:
            trial = self.study.best_trial
        except ValueError:
            return None
        run = trial.user_attrs.get("run_dir")
        return {"number": trial.number, "params": dict(trial.params), "value": _finite(trial.value),
                "run": _relative(run, self.experiment_dir) if run else None}

    def summary(self) -> dict[str, Any]:
        done, running = self.counts()
        return {
            "experiment": "search", "format": FORMAT,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "study": self.study.study_name, "storage": _storage_label(self.storage_url),
            "metric": self.settings.metric, "direction": self.settings.direction,
            "space": {k: p.spec for k, p in self.params.items()},
            "trials_asked": self.settings.trials, "trials_done": done, "trials_running": running,
            "command": self.command, "settings": self.settings.to_dict(),
            "best": self.best(), "trials": self.trial_records(),
        }

    def write_summary(self) -> Path:
        return write_json(self.experiment_dir / SUMMARY_FILE, self.summary(), indent=1)


def _grid_sampler():
    """Optuna's GridSampler, without its ``study.stop()`` once the grid is done: that works only inside
    ``study.optimize`` (and fails a ``tell`` outside it); this driver counts the trials itself."""
    samplers = _optuna().samplers

    class GridSampler(samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# -- the driver -----------------------------------------------------------------------------------
@dataclass
class _Flight:
    search: Search
    trial: Any
    config: TrainConfig
    handle: Any = None
    steps: set = field(default_factory=set)
    seen: int = 0
    prune_asked: bool = False
    followers: list = field(default_factory=list)  # trials asked with the same parameters meanwhile
    trial_values: dict = field(default_factory=dict)  # epoch → the metric reported
    said_locked: bool = False

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)


def drive(searches: Sequence[Search], launcher: Launcher, say: Message) -> bool:
    """Run the searches' trials through ``launcher`` until each study has its trials; True when all have.

    The studies are open (:meth:`Search.open`). A trial is asked from the study with the most
    trials still to run (ties: the first given), so several studies share the launcher's slots.
    """
    optuna = _optuna()
    TrialState = optuna.trial.TrialState
    flights: list[_Flight] = []  # submitted (or waiting for an outside process to let go of the run)
    failure: BaseException | None = None
    stopping = False
    last_look = 0.0

    def submitted() -> int:
        return sum(1 for f in flights if f.handle is not None)

    def tell(flight: _Flight, state, value: float | None = None, **attrs: Any) -> None:
        for trial in [flight.trial, *flight.followers]:
            for key, attr in attrs.items():
                trial.set_user_attr(key, attr)
            if trial is not flight.trial:
                for step, v in sorted(flight.trial_values.items()):
                    trial.report(v, step)
            flight.search.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state,
                                     skip_if_finished=True)
        flight.search.write_summary()

    def submit(flight: _Flight) -> bool:
        try:
            check_unlocked(flight.run_dir)
        except RunDirLockedError:
            if not flight.said_locked:
                flight.said_locked = True
                say(f"{flight.run_dir.name} is being trained by process {lock_holder(flight.run_dir) or '?'} "
                    "(started before this command); waiting for it")
            return False
        flight.handle = launcher.submit(launcher.worker_config(flight.config))
        flight.search.index.mark(flight.config, SUBMITTED, where=flight.handle.where())
        return True

    def report(flight: _Flight) -> None:
        # The pruner is asked after every epoch in order, whenever the driver happens to read them,
        # so whether a trial is pruned depends on its numbers only, never on how fast it ran: a
        # run that finished before its stop request landed is still told PRUNED.
        records = rundir.read_metrics(flight.config.out, partial_ok=True)
        metric = flight.search.settings.metric
        for record in records[flight.seen:]:
            if flight.prune_asked:
                break
            value, step = record.get(metric), record.get("epoch")
            if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(step, int) \
                    and step not in flight.steps:
                flight.steps.add(step)
                flight.trial_values[step] = float(value)
                flight.trial.report(float(value), step)
                say(f"{flight.search.label} trial {flight.trial.number} ({_params_text(flight.trial.params)}): "
                    f"epoch {step}, {metric} {value:.4g}")
                last_epoch = flight.config.epochs is not None and step >= flight.config.epochs
                if not last_epoch and flight.trial.should_prune():
                    flight.prune_asked = True
                    if flight.handle is not None and not flight.handle.done():
                        (flight.run_dir / rundir.STOP_REQUEST).write_text("pruned by the search\n", encoding="utf-8")
                    say(f"{flight.search.label} trial {flight.trial.number}: pruned after epoch {step}")
        flight.seen = max(flight.seen, len(records))

    def finish(flight: _Flight) -> None:
        nonlocal failure, stopping
        report(flight)
        search, trial = flight.search, flight.trial
        try:
            outcome = flight.handle.outcome()
        except Exception as error:  # noqa: BLE001 - recorded in the study; raised once the others are done
            line = _one_line(error)
            if DIVERGED_TEXT in line:
                search.index.mark(flight.config, FAILED, error=line, where=flight.handle.where())
                say(f"{search.label} trial {trial.number}: diverged ({line}); told PRUNED")
                tell(flight, TrialState.PRUNED, diverged=True, error=line)
                return
            search.index.mark(flight.config, FAILED, error=line, where=flight.handle.where())
            tell(flight, TrialState.FAIL, error=line)
            say(f"{search.label} trial {trial.number} failed: {line}")
            failure = failure or error
            return
        search.index.mark(flight.config, PRUNED if flight.prune_asked else FINISHED if outcome.finished else STOPPED,
                          seconds=round(outcome.seconds, 1), where=flight.handle.where())
        (flight.run_dir / rundir.STOP_REQUEST).unlink(missing_ok=True)
        if flight.prune_asked:
            tell(flight, TrialState.PRUNED)
        elif outcome.finished:
            value = final_value(flight.config.out, search.settings.metric)
            if value is None:
                say(f"{search.label} trial {trial.number}: no finite {search.settings.metric}; told PRUNED")
                tell(flight, TrialState.PRUNED, diverged=True)
            else:
                tell(flight, TrialState.COMPLETE, value)
                say(f"{search.label} trial {trial.number} ({_params_text(trial.params)}): "
                    f"{search.settings.metric} {value:.4g} ({outcome.action}, {outcome.seconds:.1f} s)")
        else:  # stopped by a signal: left RUNNING, so the next command continues it
            say(f"{search.label} trial {trial.number}: stopped by {outcome.stopped_by}; checkpoint saved")
            stopping = True

    try:
        while True:
            # Runs an earlier driver left training: submitted once their process lets go.
            for flight in [f for f in flights if f.handle is None]:
                if launcher.parallel is not None and submitted() >= launcher.parallel:
                    break
                submit(flight)
            while not stopping and failure is None and \
                    (launcher.parallel is None or sum(1 for f in flights) < launcher.parallel):
                rooms = [(s.room(), -i, s) for i, s in enumerate(searches)]
                rooms = [r for r in rooms if r[0] > 0]
                if not rooms:
                    break
                search = max(rooms, key=lambda r: (r[0], r[1]))[2]
                trial = search.ask()
                config = search.config_for(trial.params)
                trial.set_user_attr("experiment_dir", str(search.experiment_dir.resolve()))
                trial.set_user_attr("run_dir", str(Path(config.out).resolve()))
                trial.set_user_attr("run_id", run_id(config))
                twin = next((f for f in flights if f.run_dir.resolve() == Path(config.out).resolve()), None)
                if twin is not None:
                    twin.followers.append(trial)
                    continue
                flight = _Flight(search, trial, config)
                search.index.entry(config)
                flights.append(flight)
                submit(flight)
                search.write_summary()
            if not flights:
                break
            time.sleep(DONE_POLL_S)
            if time.monotonic() - last_look >= METRICS_POLL_S:
                last_look = time.monotonic()
                for flight in flights:
                    if flight.handle is not None:
                        report(flight)
            for flight in [f for f in flights if f.handle is not None and f.handle.done()]:
                flights.remove(flight)
                finish(flight)
    except BaseException:
        # Stopped (Ctrl-C, a signal, an error of the driver): the runs in flight stop at the end of their epoch
        # with a checkpoint, wherever they train (a local worker also gets Ctrl-C itself); their trials stay
        # RUNNING, and the next command continues them from their checkpoints.
        for flight in flights:
            if flight.handle is not None:
                with contextlib.suppress(OSError):
                    (flight.run_dir / rundir.STOP_REQUEST).write_text("the search driver stopped\n",
                                                                      encoding="utf-8")
                flight.handle.cancel()
        raise
    finally:
        for search in searches:
            if search.study is not None:
                search.write_summary()
    if failure is not None:
        raise failure
    return not stopping and all(s.room() <= 0 and s.counts()[1] == 0 for s in searches)


def final_value(run_dir: str | Path, metric: str) -> float | None:
    """The run's last finite value of ``metric`` (its final epoch's, evaluated after the last one)."""
    for record in reversed(rundir.read_metrics(run_dir, partial_ok=True)):
        value = record.get(metric)
        if isinstance(value, (int, float)):
            return float(value) if math.isfinite(value) else None
    return None


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# -- the API --------------------------------------------------------------------------------------
class SearchResult(ExperimentResult):
    """What :func:`run_search` did; ``summary`` is ``search.json``."""

    def table(self) -> str:
        return format_trials(self.summary or {})


def format_trials(summary: Mapping[str, Any]) -> str:
    space = list((summary.get("space") or {}))
    metric = summary.get("metric", "value")
    widths = {k: max(12, len(k)) for k in space}
    header = f"{'trial':>5} {'state':<8} " + " ".join(f"{k:>{widths[k]}}" for k in space) + f" {metric:>12} {'epochs':>6}"
    lines = [header, "-" * len(header)]
    for trial in summary.get("trials") or []:
        values = " ".join(f"{_fmt(trial['params'].get(k)):>{widths[k]}}" for k in space)
        value = trial.get("value")
        lines.append(f"{trial['number']:>5} {trial['state']:<8} {values} "
                     f"{(f'{value:.4g}' if value is not None else '–'):>12} {trial.get('epochs', 0):>6}")
    best = summary.get("best")
    if best:
        lines.append(f"best: trial {best['number']} ({_params_text(best['params'])}), {metric} {best['value']:.4g}"
                     f", run {best['run']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_search(settings: SearchSettings | Mapping[str, Any] | None = None, *, say: Message | None = None,
               **changes: Any) -> SearchResult:
    """Run (or continue) a search: ``settings`` a :class:`SearchSettings` (or a mapping), ``changes`` its fields.

    ``space={"lr": "loguniform:1e-3:1"}``, ``trials``, ``sampler``, ``pruner``, ``metric``, ``storage``,
    ``jobs``, launcher settings… Returns a :class:`SearchResult` (``summary`` is ``search.json``);
    ``complete`` is False when the driver was stopped before the study had its trials.
    """
    _optuna()
    settings = SearchSettings.of(settings, **changes)
    experiment_dir = Path(settings.out) if settings.out else Path("runs") / f"search-{settings.model}-{settings.data}"
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise ConfigError(f"--out {experiment_dir} is a file; give a directory for the search")
    say = say or stderr_printer("reslab search", enabled=not settings.quiet)
    threads = default_threads(settings.launcher, settings.jobs, settings.overrides)
    search = Search.prepare(settings, experiment_dir, threads=threads)
    command = search.command = settings.command(experiment_dir)
    launcher = make_launcher(settings.launch_settings(), experiment_dir, jobs=settings.jobs)
    with launcher, ExperimentLock(experiment_dir):
        search.index = RunIndex.load(experiment_dir)
        announce_start()
        search.open(say)
        write_settings_file(experiment_dir, settings, command)
        search.index.set_launcher(settings.launch_settings().to_dict(), command)
        search.index.save()
        done, _ = search.counts()
        say(f"study {search.study.study_name} in {_storage_label(search.storage_url)}: {done} of {settings.trials} "
            f"trials done; {settings.sampler} sampler, {settings.pruner} pruner, "
            f"{launcher.parallel or 'all'} at a time")
        complete = drive([search], launcher, say)
        path = search.write_summary()
    summary = search.summary()
    if not complete:
        say(f"stopped before the study had its {settings.trials} trials; run the same command again to continue: "
            f"{command}")
    return SearchResult(experiment_dir, [], summary, [path, experiment_dir / "settings.json"], complete=complete)


__all__ = ["SearchSettings", "Search", "SearchResult", "Param", "run_search", "parse_space", "parse_param",
           "read_space_file", "model_for_depth", "drive", "final_value", "format_trials", "METRICS", "INSTALL_HINT"]
