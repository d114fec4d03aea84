"""The Slurm launcher: every run is a Slurm job submitted through submitit, requeued on timeout.

Each run is one job (named ``reslab-<run name>``) whose Python side is :class:`RunJob`: it calls
:func:`run_on_worker` (train, resume or reuse the run) with submitit's timeout/preemption signal
(``SIGUSR2``, sent ``signal_delay_s`` before the time limit) as one more stop signal of the
trainer. On that signal the trainer finishes its step, saves a checkpoint and returns; the job
then hands the signal to submitit's own handler, which requeues it (``max_requeues`` times after
timeouts at most) as a fresh :class:`RunJob` with the same arguments: everything the run needs to
continue lives in its directory, never in the job, so the requeued job resumes from the
checkpoint. Once the requeues are spent the job ends with a result that says so, and the run
fails in one line (its checkpoint kept: ``reslab sweep resume EXP_DIR`` continues it).

Jobs write their submission scripts, pickles and logs under ``EXP_DIR/.submitit/`` (Slurm:
``.submitit/<job id>/``); the driver needs none of them, only the result each job leaves there.

``slurm_executor="local"`` runs the same jobs with submitit's local executor (real processes,
time limits, signals and requeues on this machine): a dry run of a Slurm sweep.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from reslab.experiments.launch.base import LaunchError, Launcher, RunFailed, outcome_from_worker, run_on_worker
from reslab.experiments.runs import STATUS_UNFINISHED, RunOutcome, run_status
from reslab.train import TrainConfig

SUBMITIT_DIR = ".submitit"
#: The key a job's result has when its requeues were spent (the run did not finish).
REQUEUES_SPENT = "requeues_spent"
#: Seconds before the time limit at which Slurm sends the timeout signal (at most; a quarter of
#: short limits): time to finish a step and save a checkpoint.
SIGNAL_DELAY_S = 90
NO_SBATCH = ("sbatch not found: --launcher slurm submits to a Slurm cluster from a login node; on this machine use "
             "--slurm-executor local to try it, or --launcher local/ray")


class _TimeUp(BaseException):
    """The timeout signal came while no training loop was listening (starting up): stop at once."""


def _timeout_signal() -> int:
    from submitit.core.job_environment import JobEnvironment  # noqa: PLC0415 - on the worker, in a submitit job

    return JobEnvironment._usr_sig()


class RunJob:
    """What a submitit job runs: one run, resumable; requeued by submitit on the timeout signal.

    Holds no state: a requeued job is a fresh ``RunJob`` with the same arguments, and the run
    continues from what its directory holds.
    """

    def __call__(self, config: dict[str, Any], storage_root: str) -> dict[str, Any]:
        usr_sig = _timeout_signal()

        def early(signum, frame):  # until the trainer listens, and after it stopped listening
            raise _TimeUp

        submitit_handler = signal.signal(usr_sig, early)
        result: dict[str, Any] | None = None
        try:
            result = run_on_worker(config, storage_root, stop_signals=(usr_sig,))
        except _TimeUp:
            pass
        finally:
            signal.signal(usr_sig, submitit_handler)
        timed_out = result is None or (not result["finished"] and result.get("stopped_by") == signal.Signals(usr_sig).name)
        if timed_out and callable(submitit_handler):
            from submitit.core.utils import UncompletedJobError  # noqa: PLC0415

            try:
                # submitit's handler: call checkpoint() below and requeue (this process exits), or
                # raise UncompletedJobError when the job timed out too many times.
                signal.raise_signal(usr_sig)
            except UncompletedJobError as error:
                return {**(result or {}), REQUEUES_SPENT: True, "reason": str(error)}
        if result is None:  # not in a submitit job (called directly): say the run was stopped
            raise LaunchError(f"{Path(config['out']).name}: stopped by {signal.Signals(usr_sig).name} before training")
        return result

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's requeue hook: the same job again (the run's state is on disk, not in the job)."""
        from submitit.helpers import DelayedSubmission  # noqa: PLC0415

        return DelayedSubmission(type(self)(), *args, **kwargs)


class SlurmHandle:
    """A run's submitit job."""

    def __init__(self, job, config: TrainConfig, launcher: "SlurmLauncher"):
        self.job = job
        self.config = config
        self.launcher = launcher

    @property
    def name(self) -> str:
        return Path(self.config.out).name

    def done(self) -> bool:
        return self.job.done()

    def where(self) -> str:
        return f"{'submitit local' if self.launcher.settings.slurm_executor == 'local' else 'slurm'} job {self.job.job_id}"

    def cancel(self) -> None:
        self.job.cancel(check=False)

    def outcome(self) -> RunOutcome:
        from submitit.core.utils import FailedJobError, UncompletedJobError  # noqa: PLC0415

        log = self.job.paths.stderr
        try:
            result = self.job.result()
        except FailedJobError as error:
            raise RunFailed(f"{self.name} failed in {self.where()}: {_last_error_line(str(error))} (log: {log})") \
                from None
        except UncompletedJobError:
            raise RunFailed(f"{self.name}: {self.where()} ended without a result (killed, or out of time before it "
                            f"could save; the local executor requeues 5 times at most); its log: {log}") from None
        if result.get(REQUEUES_SPENT):
            raise RunFailed(self._requeues_spent_message())
        return outcome_from_worker(result)

    def _requeues_spent_message(self) -> str:
        settings = self.launcher.settings
        times = settings.max_requeues + 1
        exp_dir = self.launcher.storage_root
        head = (f"{self.name} failed: timed out {times} time{'s' if times != 1 else ''} "
                f"(--timeout-min {settings.timeout_min:g}, --max-requeues {settings.max_requeues})")
        if run_status(self.config.out) == STATUS_UNFINISHED:
            return f"{head}; the run keeps its checkpoint: reslab sweep resume {exp_dir} continues it"
        return f"{head} before saving a checkpoint; give a longer --timeout-min"


def _last_error_line(text: str) -> str:
    """The exception line of a traceback submitit sends back (``pkg.Error: message`` → ``message``)."""
    lines = [line for line in text.split("----------------------")[1].splitlines() if line.strip()] \
        if text.count("----------------------") >= 2 else [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "the job raised an error"
    last = lines[-1].strip()
    match = re.match(r"^[A-Za-z_][\w.]*: (.+)$", last)
    return match.group(1) if match else last


class SlurmLauncher(Launcher):
    """One submitit job per run: Slurm (``sbatch``) or submitit's local executor."""

    name = "slurm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._executor = None
        self._session = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    @property
    def local(self) -> bool:
        return self.settings.slurm_executor == "local"

    def start(self) -> None:
        s = self.settings
        if s.gpus_per_run != int(s.gpus_per_run):
            raise LaunchError(f"--gpus-per-run {s.gpus_per_run:g}: Slurm gives whole GPUs to a job; give a whole "
                              "number (--launcher ray shares GPUs in fractions)")
        if not self.local and shutil.which("sbatch") is None:
            raise LaunchError(NO_SBATCH)

    @property
    def folder(self) -> Path:
        """Where submitit writes each job's files (``%j``: the job id)."""
        base = self.storage_root / SUBMITIT_DIR
        # Slurm's job ids are unique: a folder each. The local executor's are process ids, which
        # come back: its jobs share one folder per driver (file names start with the job id).
        return (base / f"local-{self._session}") if self.local else (base / "%j")

    def _make_executor(self):
        import submitit  # noqa: PLC0415 - the optional extra

        s = self.settings
        options = dict(s.slurm_option)
        timeout_s = 60 * s.timeout_min
        signal_delay = int(options.pop("signal_delay_s", min(SIGNAL_DELAY_S, max(1, int(timeout_s / 4)))))
        cpus = max(1, math.ceil(s.cpus_per_run))
        gpus = int(s.gpus_per_run)
        if self.local:
            executor = submitit.LocalExecutor(folder=self.folder, max_num_timeout=s.max_requeues)
            parameters = {"timeout_min": s.timeout_min, "signal_delay_s": signal_delay, "gpus_per_node": gpus}
            # The cluster's own settings (account, qos, ...) mean nothing here.
            valid = {"setup", "stderr_to_stdout", "visible_gpus"}
            parameters.update({k: v for k, v in options.items() if k in valid})
        else:
            executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=s.max_requeues)
            valid = executor._valid_parameters()
            parameters = {"time": max(1, math.ceil(s.timeout_min)), "signal_delay_s": signal_delay,
                          "cpus_per_task": cpus, "ntasks_per_node": 1}
            if gpus:
                parameters["gpus_per_node"] = gpus
            if s.slurm_partition:
                parameters["partition"] = s.slurm_partition
            extra: dict[str, Any] = {}
            for key, value in options.items():
                known = key.replace("-", "_")
                if known in valid:
                    parameters[known] = value
                else:
                    extra[key] = value
            if extra:
                parameters["additional_parameters"] = extra
        try:
            executor.update_parameters(**parameters)
        except (ValueError, NameError) as error:
            raise LaunchError(f"--slurm-option: {str(error).splitlines()[0]}") from None
        return executor

    def worker_config(self, config: TrainConfig) -> TrainConfig:
        return replace(config, quiet=True, threads=config.threads or max(1, int(self.settings.cpus_per_run)))

    def submit(self, config: TrainConfig) -> SlurmHandle:
        if self._executor is None:
            self._executor = self._make_executor()
        name = Path(config.out).name
        if not self.local:
            self._executor.update_parameters(job_name=f"reslab-{name}")
        try:
            job = self._executor.submit(RunJob(), config.to_dict(), str(self.storage_root))
        except Exception as error:  # noqa: BLE001 - sbatch refused it (partition, account, limits): one line
            from submitit.core.utils import FailedJobError  # noqa: PLC0415

            if not isinstance(error, (FailedJobError, OSError)):
                raise
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise LaunchError(f"{name}: sbatch refused the job: {lines[-1] if lines else type(error).__name__}") \
                from None
        return SlurmHandle(job, config, self)


__all__ = ["SlurmLauncher", "SlurmHandle", "RunJob"]
