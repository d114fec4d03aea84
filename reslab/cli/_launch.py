"""The launcher flags every experiment command shares (``--launcher local|slurm|ray`` and the rest)."""

from __future__ import annotations

import argparse
from typing import Any

from reslab.experiments.launch.base import LAUNCH_FIELDS, LaunchSettings
from reslab.settings import add_arguments, given, parse_key_values

GROUP_TITLE = "where the runs train"
GROUP_TEXT = ("local (default) trains on this machine; slurm submits each run as a Slurm job through submitit, "
              "ray as a task on a Ray cluster. slurm and ray need {storage} on storage that every worker sees at "
              "the same path (a shared filesystem): it is checked before anything starts. A run that is preempted, "
              "timed out or whose worker dies resumes from its checkpoint. See docs/scale.md.")


def add_launch_arguments(parser: argparse.ArgumentParser, *, unset: str | None = None, storage: str = "--out",
                         more: str = "") -> None:
    """The launcher flags, in their own group of ``--help`` (``unset``: flags not given stay out of
    the parsed arguments, and their help says what decides instead; ``storage``: the directory
    that must be shared; ``more``: a sentence added to the group's text)."""
    group = parser.add_argument_group(GROUP_TITLE, GROUP_TEXT.format(storage=storage) + (" " + more if more else ""))
    add_arguments(group, LaunchSettings, include=LAUNCH_FIELDS, unset=unset)
    group.add_argument("--slurm-option", dest="slurm_option", action="append", default=argparse.SUPPRESS,
                       metavar="KEY=VALUE", help="slurm: a further sbatch setting (e.g. account=lab, qos=high, "
                                                 "constraint=a100); repeatable")


def settings_given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """:func:`given` for a settings class that extends :class:`LaunchSettings` (``--slurm-option``
    pairs become a dict)."""
    values = given(args, cls)
    if isinstance(values.get("slurm_option"), list):
        values["slurm_option"] = parse_key_values(values["slurm_option"], "--slurm-option", example="account=lab")
    return values


__all__ = ["add_launch_arguments", "settings_given", "LAUNCH_FIELDS"]
