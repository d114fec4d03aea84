"""The Ray launcher: every run is a Ray task on a cluster (``--launcher ray``).

Ray core tasks fit an experiment's runs better than Ray Tune: each run is an independent,
resumable function call (:func:`~reslab.experiments.launch.base.run_on_worker`, which trains,
resumes or reuses the run from what its directory holds), and its settings come from the
experiment, not from a search. A task whose worker process or node dies is retried by Ray
itself (``max_retries`` = ``--max-requeues``; the run's own errors are not retried), and the retry
resumes from the run's last checkpoint on the shared storage, so nothing but the work since that
checkpoint is lost. Ray only schedules (``--cpus-per-run``, ``--gpus-per-run``) and retries.

``ray`` is imported here only, and this module only when ``--launcher ray`` is asked for.
"""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError, WorkerCrashedError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from reslab.experiments.launch.base import (
    Launcher,
    LaunchError,
    RunFailed,
    not_seen_error,
    outcome_from_worker,
    run_on_worker,
    storage_marker,
    storage_seen,
)
from reslab.experiments.runs import RunOutcome, cpu_count
from reslab.train import TrainConfig

#: Seconds to wait for a TCP answer from ``--ray-address`` before saying nobody is there.
CONNECT_TIMEOUT_S = 3.0
#: Seconds every node has to answer the shared-storage check (a node may start a worker first).
PROBE_TIMEOUT_S = 120.0
#: Seconds ``close()`` waits for cancelled runs to save their checkpoints.
CANCEL_WAIT_S = 60.0

#: Where a task ran, in a RayTaskError's text: ``ray::f() (pid=1084, ip=10.0.0.5)``.
_NODE = re.compile(r"\bip=([^\s,)]+)")
_START_HINT = "start one with `ray start --head`, or leave --ray-address out to start a local one"


def _first_line(error: BaseException | str) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__


def _count(n: float, what: str) -> str:
    value = int(n) if float(n).is_integer() else n
    return f"{value} {what}{'' if value == 1 else 's'}"


class RayHandle:
    """One run's Ray task (an ObjectRef)."""

    def __init__(self, ref: "ray.ObjectRef", name: str, max_requeues: int):
        self.ref = ref
        self.name = name
        self.max_requeues = max_requeues
        self.cancelled = False
        self._where = "ray"

    def done(self) -> bool:
        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def outcome(self) -> RunOutcome:
        try:
            result = ray.get(self.ref)
        except RayTaskError as error:  # the run raised: its own message
            node = getattr(error, "ip", None) or _NODE.search(str(error))
            if node:
                self._where = f"ray node {node if isinstance(node, str) else node.group(1)}"
            cause = getattr(error, "cause", None)
            reason = _first_line(cause if cause is not None else error)
            where = self._where if self._where != "ray" else "Ray"
            raise RunFailed(f"{self.name} failed on {where}: {reason}") from error
        except WorkerCrashedError as error:
            deaths = self.max_requeues + 1
            raise RunFailed(
                f"{self.name} failed: its Ray worker died {_count(deaths, 'time')} (--max-requeues "
                f"{self.max_requeues}); its last checkpoint is kept and running the experiment again resumes it"
            ) from error
        except TaskCancelledError as error:
            raise RunFailed(f"{self.name} was cancelled; its last checkpoint is kept") from error
        except RayError as error:  # a node died, out of memory, an object lost, …
            raise RunFailed(f"{self.name} failed on Ray: {_first_line(error)}") from error
        self._where = f"ray node {result.get('host', '?')}"
        return outcome_from_worker(result)

    def where(self) -> str:
        return self._where

    def cancel(self) -> None:
        # Not force: Ray raises a SIGINT in the task's main thread, on which the trainer finishes
        # its step and saves a checkpoint (force would kill the worker with no checkpoint).
        self.cancelled = True
        try:
            ray.cancel(self.ref, force=False)
        except Exception:  # noqa: BLE001 - finished meanwhile, or the cluster went away
            pass


class RayLauncher(Launcher):
    """Runs as Ray tasks: on a cluster at ``--ray-address``, or on a local one started for the command."""

    name = "ray"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._initialised_here = False
        self._remote = None
        self._handles: list[RayHandle] = []

    # -- start -------------------------------------------------------------------------------------
    def start(self) -> None:
        address = self.settings.ray_address
        if address is not None:
            address = self._reachable(address)
        if not ray.is_initialized():  # else: a cluster this process already uses (tests, notebooks)
            if address is not None:
                self._connect(address)
            else:
                # "local": a new cluster, never one that `ray start` left running on this machine.
                ray.init(address="local", num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            self._initialised_here = True  # shutdown() stops a local cluster, or disconnects from one
        try:
            self._check_resources()
            self._check_storage()
        except BaseException:
            self.close()
            raise

    def _reachable(self, address: str) -> str:
        """``address`` as HOST:PORT once something answers there; LaunchError (one line) at once if not,
        rather than Ray's own wait of minutes for a cluster that is not there."""
        given = address
        if address == "auto":
            try:
                from ray._private.services import canonicalize_bootstrap_address
                address = canonicalize_bootstrap_address("auto")
            except Exception as error:  # noqa: BLE001 - Ray says no cluster is running here
                raise LaunchError(f"--ray-address auto: no running Ray cluster found on this machine "
                                  f"({_first_line(error)}); {_START_HINT}") from None
            if not address:
                raise LaunchError(f"--ray-address auto: no running Ray cluster found on this machine; {_START_HINT}")
        host, _, port = address.rpartition(":")
        if address.startswith("ray://") or not host or not port.isdigit():
            raise LaunchError(f"--ray-address {given}: expected auto or HOST:PORT of a Ray cluster's head "
                              "(e.g. 10.0.0.5:6379)")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as error:
            reason = "timed out" if isinstance(error, socket.timeout) else (error.strerror or _first_line(error))
            shown = given if given == address else f"{given} ({address})"
            raise LaunchError(f"--ray-address {shown}: no Ray cluster answers there ({reason}); {_START_HINT}") \
                from None
        return address

    def _connect(self, address: str) -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as error:  # noqa: BLE001 - a port that answers but is no Ray head, versions differ…
            raise LaunchError(f"--ray-address {address}: cannot connect to a Ray cluster there "
                              f"({_first_line(error)}); {_START_HINT}") from None

    def _check_resources(self) -> None:
        """A run asking for more than any node has would wait forever: say so now."""
        cpus, gpus = float(self.settings.cpus_per_run), float(self.settings.gpus_per_run)
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
            return
        if gpus > 0 and not any(r.get("GPU", 0) for r in nodes):
            raise LaunchError(f"--gpus-per-run {gpus:g}: asks {_count(gpus, 'GPU')} per run but the Ray cluster has "
                              "none; leave --gpus-per-run out to train on CPUs, or start the cluster on GPU nodes")
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise LaunchError(
            f"--cpus-per-run {cpus:g} --gpus-per-run {gpus:g}: no node of the Ray cluster has that much (the largest "
            f"has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs); ask for less per run")

    def _write_marker(self, marker: Path) -> None:
        marker.write_text("reslab storage check\n", encoding="utf-8")

    def _check_storage(self) -> None:
        """Every alive node must see a file this machine writes beside the experiment directory."""
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        marker = storage_marker(self.storage_root)
        probe = ray.remote(storage_seen)
        try:
            self._write_marker(marker)
            refs = [probe.options(num_cpus=0, max_retries=0, name="reslab-storage-check",
                                  scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(marker)) for n in nodes]
            ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
            if waiting:
                for ref in waiting:
                    ray.cancel(ref, force=True)
                missing = [n.get("NodeManagerAddress", "?") for n, r in zip(nodes, refs) if r in waiting]
                raise LaunchError(f"--launcher ray: the Ray node(s) {', '.join(missing)} did not run a tiny check task "
                                  f"within {PROBE_TIMEOUT_S:.0f} s; is the cluster healthy (`ray status`)?")
            try:
                answers = ray.get(refs)
            except RayError as error:
                raise LaunchError(f"--launcher ray: the storage check task failed on the cluster "
                                  f"({_first_line(error)})") from None
        finally:
            marker.unlink(missing_ok=True)
        for answer in answers:
            if not answer["seen"]:
                raise not_seen_error(self.name, self.storage_root, answer["host"])

    # -- runs --------------------------------------------------------------------------------------
    def worker_config(self, config: TrainConfig) -> TrainConfig:
        threads = config.threads or max(1, int(self.settings.cpus_per_run))
        return replace(config, quiet=True, threads=threads)

    def submit(self, config: TrainConfig) -> RayHandle:
        if self._remote is None:
            self._remote = ray.remote(run_on_worker)
        name = Path(str(config.out)).name
        ref = self._remote.options(
            num_cpus=self.settings.cpus_per_run, num_gpus=self.settings.gpus_per_run,
            max_retries=self.settings.max_requeues, retry_exceptions=False, name=f"reslab:{name}",
        ).remote(config.to_dict(), str(self.storage_root))
        handle = RayHandle(ref, str(config.out), self.settings.max_requeues)
        self._handles.append(handle)
        return handle

    def close(self) -> None:
        # Cancelled runs save a checkpoint on the SIGINT Ray sends them; let them before letting go.
        cancelled = [h.ref for h in self._handles if h.cancelled]
        if cancelled and ray.is_initialized():
            try:
                ray.wait(cancelled, num_returns=len(cancelled), timeout=CANCEL_WAIT_S)
            except Exception:  # noqa: BLE001 - the cluster went away meanwhile
                pass
        self._handles = []
        if self._initialised_here:
            self._initialised_here = False
            ray.shutdown()


__all__ = ["RayLauncher", "RayHandle"]
