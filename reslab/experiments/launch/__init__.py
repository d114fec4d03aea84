"""Launchers: the runs of an experiment train here (``local``), on Slurm (``slurm``) or on Ray (``ray``).

See :mod:`reslab.experiments.launch.base` for what a launcher does and what it needs.
"""

from reslab.experiments.launch.base import (
    LAUNCH_FIELDS,
    LAUNCHERS,
    Launcher,
    LaunchError,
    LaunchSettings,
    RunFailed,
    make_launcher,
    run_on_worker,
)

__all__ = ["LAUNCHERS", "LAUNCH_FIELDS", "Launcher", "LaunchError", "LaunchSettings", "RunFailed", "make_launcher",
           "run_on_worker"]
