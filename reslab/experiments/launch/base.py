"""Launchers: where an experiment's runs train — this machine, a Slurm cluster or a Ray cluster.

reslab has no scheduler of its own. A launcher hands each run (a :class:`TrainConfig` whose
``out`` is its run directory) to an engine people already run, and the engine calls
:func:`run_on_worker` there, which is :func:`reslab.experiments.runs.ensure_run`: train the run if
it is new, resume it from its checkpoint if it was interrupted, reuse it if it is finished.
Everything a run needs to continue lives in its directory, never in the submitted job, so a
job that is retried (Ray) or requeued (Slurm) picks up where the last checkpoint left it.

That is why every launcher but ``local`` needs the experiment directory on storage that every
worker sees (a shared filesystem): :func:`check_storage_seen` checks that at the start.

=========  ==========================================================================
launcher   the runs train
=========  ==========================================================================
local      in worker processes on this machine (``--jobs`` at a time)
slurm      as Slurm jobs through submitit (requeued on timeout or preemption)
ray        as Ray tasks on a cluster (retried elsewhere when a worker or node dies)
=========  ==========================================================================
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

from reslab.errors import ConfigError, ReslabError
from reslab.experiments.runs import RunOutcome, ensure_run
from reslab.settings import Settings, setting
from reslab.train import TrainConfig

LAUNCHERS = ("local", "slurm", "ray")
#: launcher → (the module it needs, the extra that installs it)
EXTRAS = {"slurm": ("submitit", "reslab[slurm]"), "ray": ("ray", "reslab[ray]")}
#: launcher → (its module, its Launcher class)
ENGINE_MODULES = {"local": ("reslab.experiments.launch.local", "LocalLauncher"),
                  "slurm": ("reslab.experiments.launch.slurm", "SlurmLauncher"),
                  "ray": ("reslab.experiments.launch.ray", "RayLauncher")}
#: The launcher flags, in the order ``--help`` shows them.
LAUNCH_FIELDS = ("launcher", "max_parallel", "cpus_per_run", "gpus_per_run", "timeout_min", "max_requeues",
                 "slurm_partition", "slurm_option", "slurm_executor", "ray_address")


class LaunchError(ReslabError, RuntimeError):
    """A launcher cannot start, or a worker cannot do its part (storage not seen, engine gone)."""


class RunFailed(ReslabError, RuntimeError):
    """A run failed on its worker; the message is one line saying which run, where and why."""


@dataclass(frozen=True)
class LaunchSettings(Settings):
    """Where an experiment's runs train, and with what resources. Experiments' settings extend this."""

    launcher: str = setting(
        "local", "where the runs train: local (processes on this machine), slurm (jobs through submitit) or ray "
                 "(tasks on a Ray cluster); slurm and ray need --out on storage every worker sees", metavar="local|slurm|ray")
    max_parallel: int | None = setting(None, "slurm/ray: runs training at the same time at most (default: all; "
                                             "local uses --jobs)", minimum=1, metavar="N")
    cpus_per_run: float = setting(1.0, "slurm/ray: CPU cores per run (ray takes fractions); torch uses that many "
                                       "threads", minimum=0.01, metavar="C")
    gpus_per_run: float = setting(0.0, "slurm/ray: GPUs per run (ray takes fractions such as 0.5)", minimum=0,
                                  metavar="G")
    timeout_min: float = setting(60.0, "slurm: minutes a job may run; before that it saves its checkpoint and is "
                                       "requeued", minimum=0.05, metavar="MIN")
    max_requeues: int = setting(3, "slurm: requeues after a timeout or preemption before the run fails; ray: "
                                   "retries after a worker or node dies", minimum=0, metavar="N")
    slurm_partition: str | None = setting(None, "slurm: the partition to submit to (default: the cluster's)",
                                          metavar="NAME")
    slurm_option: dict[str, Any] = setting(default_factory=dict, help="slurm: further sbatch settings, "
                                           "--slurm-option KEY=VALUE (e.g. account=lab, qos=high)", cli=False)
    slurm_executor: Literal["slurm", "local"] = setting(
        "slurm", "slurm: submit to the Slurm cluster, or run the jobs with submitit's local executor (real "
                 "processes, timeouts, signals and requeues on this machine: a dry run of a Slurm sweep)")
    ray_address: str | None = setting(None, "ray: auto or HOST:PORT of a running cluster (default: a local "
                                            "cluster started for this command)", metavar="auto|HOST:PORT")

    def check(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher {self.launcher!r}: unknown; choose one of {', '.join(LAUNCHERS)}")
        require_extra(self.launcher)  # before an experiment says or writes anything
        def given(names: Sequence[str]) -> str:
            return ", ".join("--" + n.replace("_", "-") for n in names if getattr(self, n) != LaunchSettings.default(n))

        slurm_only = given(("timeout_min", "slurm_partition", "slurm_option", "slurm_executor"))
        if slurm_only and self.launcher != "slurm":
            what = "Slurm settings; give them" if "," in slurm_only else "a Slurm setting; give it"
            raise ConfigError(f"{slurm_only}: {what} with --launcher slurm")
        if self.ray_address is not None and self.launcher != "ray":
            raise ConfigError("--ray-address: a Ray setting; give it with --launcher ray")
        engine_only = given(("max_parallel", "max_requeues", "cpus_per_run", "gpus_per_run"))
        if engine_only and self.launcher == "local":
            raise ConfigError(f"{engine_only}: only for --launcher slurm or ray; the local launcher trains --jobs "
                              "runs at a time on this machine")

    def launch_settings(self) -> "LaunchSettings":
        """Just the launcher's settings (experiments' settings extend this class)."""
        return LaunchSettings(**{name: getattr(self, name) for name in LaunchSettings.field_names()})


class RunHandle(Protocol):
    """A run handed to an engine: poll it, read its outcome, cancel it."""

    def done(self) -> bool: ...

    def outcome(self) -> RunOutcome:
        """The run's :class:`RunOutcome`; :class:`RunFailed` (one line) if it failed."""

    def where(self) -> str:
        """Where it runs, for people: ``pid 4242``, ``slurm job 8812``, ``ray node 10.1.2.3``."""

    def cancel(self) -> None: ...


class Launcher:
    """Hands runs to an engine. Subclasses: :mod:`.local`, :mod:`.slurm`, :mod:`.ray`."""

    name = "?"

    def __init__(self, settings: LaunchSettings, storage_root: Path, *, jobs: int = 1):
        self.settings = settings
        self.storage_root = Path(storage_root).resolve()
        self.jobs = jobs

    @property
    def parallel(self) -> int | None:
        """Runs in flight at most (None: as many as there are)."""
        return self.settings.max_parallel

    def start(self) -> None:
        """Connect to the engine and check what the runs will need (extras, address, storage); before any
        run is submitted or any file written. Raises :class:`LaunchError` / ConfigError in one line."""

    def worker_config(self, config: TrainConfig) -> TrainConfig:
        """The run's settings as the worker trains it (threads to match the resources it got)."""
        return config

    def submit(self, config: TrainConfig) -> RunHandle:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the engine (a local Ray cluster started for the command stops here)."""

    def __enter__(self) -> "Launcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def require_extra(launcher: str) -> None:
    """One line saying what to install when ``launcher``'s engine is missing."""
    module, extra = EXTRAS.get(launcher, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise LaunchError(f"--launcher {launcher} needs {module}, which is not installed: pip install '{extra}'")


def make_launcher(settings: LaunchSettings, storage_root: str | Path, *, jobs: int = 1) -> Launcher:
    """The launcher ``settings.launcher`` names, not started yet (``with make_launcher(...) as launcher``)."""
    name = settings.launcher
    if name not in LAUNCHERS:
        raise ConfigError(f"--launcher {name!r}: unknown; choose one of {', '.join(LAUNCHERS)}")
    require_extra(name)
    if jobs > 1 and name != "local":
        raise ConfigError(f"--jobs {jobs}: the local launcher's; with --launcher {name} the engine runs them all at "
                          "once, or --max-parallel N at a time")
    # Each engine's module imports this one; naming it here (not importing it) keeps the
    # dependency one-way, and Ray or submitit load only when a command asks for them.
    module_name, class_name = ENGINE_MODULES[name]
    launcher_class = getattr(importlib.import_module(module_name), class_name)
    return launcher_class(settings, storage_root, jobs=jobs)


# -- on the worker ---------------------------------------------------------------------------------
def storage_marker(storage_root: Path) -> Path:
    """The file a driver writes (and a worker looks for) to prove that both see the same storage:
    beside the experiment directory's nearest existing folder, so that checking writes nothing that
    stays."""
    existing = Path(storage_root)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing / f".reslab-storage-check-{uuid.uuid4().hex[:12]}"


def storage_seen(marker: str) -> dict[str, Any]:
    """Run on a worker: whether it sees ``marker`` (and its host, to name it if not)."""
    return {"seen": os.path.isfile(marker), "host": socket.gethostname(), "pid": os.getpid()}


def not_seen_error(launcher: str, storage_root: Path, host: str) -> LaunchError:
    return LaunchError(
        f"--launcher {launcher}: a worker on {host} cannot see {storage_root} (a file written there by this "
        "machine is not there); put --out on storage every worker mounts at the same path (a shared filesystem)")


def run_on_worker(config: dict[str, Any], storage_root: str, *, stop_signals: tuple[int, ...] = ()) -> dict[str, Any]:
    """What every engine runs for one run: :func:`ensure_run` on the run's settings, on this worker.

    Checks first that the worker sees the experiment directory (the driver created it). Returns the
    :class:`RunOutcome` as a dict plus the worker's ``host`` and ``pid``.
    """
    if not os.path.isdir(storage_root):
        raise LaunchError(f"the worker on {socket.gethostname()} cannot see {storage_root}; put the experiment on "
                          "storage every worker mounts at the same path (a shared filesystem)")
    outcome = ensure_run(TrainConfig.from_dict(config), stop_signals=stop_signals)
    return {**asdict(outcome), "host": socket.gethostname(), "pid": os.getpid()}


def outcome_from_worker(result: dict[str, Any]) -> RunOutcome:
    fields = RunOutcome.__dataclass_fields__
    return RunOutcome(**{k: v for k, v in result.items() if k in fields})


__all__ = ["LAUNCHERS", "LAUNCH_FIELDS", "LaunchSettings", "Launcher", "RunHandle", "LaunchError", "RunFailed",
           "make_launcher", "require_extra", "run_on_worker", "storage_marker", "storage_seen", "not_seen_error",
           "outcome_from_worker"]
