"""``reslab sweep run|status|resume``: a grid of runs through any launcher; where every run stands; continue."""

from __future__ import annotations

import shlex
from pathlib import Path

from reslab.cli._launch import LAUNCH_FIELDS, add_launch_arguments, settings_given
from reslab.errors import ConfigError
from reslab.experiments.launch.base import LaunchSettings
from reslab.settings import add_arguments, key_value_arguments, to_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="a grid of training runs on this machine, Slurm or Ray; its status; resume it",
        description="Sweeps of training runs, resumable and identified by their settings. `reslab sweep run` "
                    "trains every point of a grid × seeds; `reslab sweep status DIR` shows each run of a sweep "
                    "or experiment; `reslab sweep resume DIR` continues what is not finished.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    from reslab.experiments.grid import GridSweepSettings  # noqa: PLC0415 - only when sweep's parser is built

    run = actions.add_parser(
        "run", help="train every grid point × seed (resumable)",
        description="Train one run per grid point and seed, each in its own directory under --out named by what "
                    "varies and its id (a hash of its settings). Finished runs are reused and unfinished ones "
                    "resumed when the same command runs again (or reslab sweep resume DIR). Example: reslab sweep "
                    "run --model resnet20 --data digits --grid lr=0.05,0.1 --seeds 0 1 --out runs/lr-sweep")
    add_arguments(run, GridSweepSettings, include=["model", "data", "data_dir", "recipe", "epochs", "seeds"])
    run.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                     help="a setting and the values it takes (e.g. --grid lr=0.05,0.1 --grid model=resnet20,plain20);"
                          " repeatable: every combination is a run")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                     help="a training setting every run shares (e.g. --set batch_size=64); repeatable")
    add_arguments(run, GridSweepSettings, include=["jobs", "out", "quiet"])
    add_launch_arguments(run)
    run.set_defaults(func=_run)

    status = actions.add_parser("status", help="per run: pending, running, finished or failed; epochs; where",
                                description="Where every run of a sweep or experiment stands (read from its "
                                            "directories and its index runs.json).")
    status.add_argument("experiment_dir", metavar="EXP_DIR")
    status.set_defaults(func=_status)

    resume = actions.add_parser(
        "resume", help="continue a sweep or experiment: finished runs are kept, the rest resume",
        description="Run the command that made EXP_DIR again (its settings.json records it): finished runs are "
                    "reused, unfinished ones resume from their checkpoints, failed ones are tried again. Give "
                    "launcher flags to continue on another launcher (e.g. --launcher ray); without them the "
                    "sweep's own launcher is used. One driver at a time: a second resume of the same directory "
                    "is refused.")
    resume.add_argument("experiment_dir", metavar="EXP_DIR")
    add_launch_arguments(resume, unset="the sweep's own", storage="EXP_DIR",
                         more="Launcher flags given here replace the ones the sweep was started with, and later "
                              "resumes use them too (--jobs goes when the runs move to slurm or ray).")
    resume.set_defaults(func=_resume)


def _run(args) -> int:
    from reslab.cli.experiment import finish  # noqa: PLC0415
    from reslab.experiments.grid import GridSweepSettings, parse_grid, run_grid_sweep  # noqa: PLC0415
    from reslab.train import parse_overrides  # noqa: PLC0415

    values = settings_given(args, GridSweepSettings)
    values["grid"] = parse_grid(args.grid)
    values["overrides"] = parse_overrides(args.settings)
    return finish("sweep", lambda: run_grid_sweep(values), prefix="reslab sweep",
                  resume_hint=f"reslab sweep resume {args.out}" if args.out else None)


def _experiment_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"{text}: no such directory; give the --out directory of a sweep or experiment")
    return path


def _status(args) -> int:
    from reslab.experiments.index import format_states, run_states  # noqa: PLC0415

    print(format_states(run_states(_experiment_dir(args.experiment_dir))))
    return 0


def _resume(args) -> int:
    from reslab.experiments.common import SETTINGS_FILE  # noqa: PLC0415
    from reslab.store.jsonfiles import read_json  # noqa: PLC0415

    experiment_dir = _experiment_dir(args.experiment_dir)
    recorded = read_json(experiment_dir / SETTINGS_FILE, error=ConfigError, what="experiment settings") \
        if (experiment_dir / SETTINGS_FILE).is_file() else None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("command"), str):
        raise ConfigError(f"{experiment_dir} has no {SETTINGS_FILE} with the command that made it; it is not a sweep "
                          "or experiment directory reslab wrote (or it stopped before starting)")
    words = shlex.split(recorded["command"])
    if words[:1] != ["reslab"] or len(words) < 3:
        raise ConfigError(f"{experiment_dir / SETTINGS_FILE}: its command {recorded['command']!r} is not a reslab "
                          "experiment or sweep command")
    given = settings_given(args, LaunchSettings)
    # The directory given is the one resumed, wherever the command first wrote (it may have moved);
    # --jobs (the local launcher's runs at a time) goes when the runs move to an engine.
    replaced = {"--out"} | ({"--jobs"} if given.get("launcher", "local") != "local" else set())
    argv = [*_without(_with_launcher(words[1:], _launch_arguments(given)), replaced), "--out", str(experiment_dir)]
    from reslab.cli.main import build_parser  # noqa: PLC0415 - the command recorded may be any experiment
    from reslab.experiments.index import said_on_start  # noqa: PLC0415

    parsed = build_parser().parse_args(argv)
    # Said once the driver holds the experiment, so a refusal before that is the only line.
    with said_on_start("reslab sweep resume: " + shlex.join(["reslab", *argv])):
        return parsed.func(parsed)


def _launch_arguments(given: dict) -> list[str]:
    """The launcher flags given to ``resume`` (``settings_given``), as arguments."""
    if not given:
        return []
    given = dict(given)
    options = given.pop("slurm_option", None)
    settings = LaunchSettings.of(given)
    arguments = to_arguments(settings, base=LaunchSettings(), always=[k for k in given])
    return arguments + key_value_arguments(options or {}, "--slurm-option")


def _with_launcher(argv: list[str], launch_arguments: list[str]) -> list[str]:
    """``argv`` with its launcher flags replaced by ``launch_arguments`` (kept when none are given)."""
    if not launch_arguments:
        return argv
    return _without(argv, {"--" + name.replace("_", "-") for name in LAUNCH_FIELDS}) + launch_arguments


def _without(argv: list[str], flags: set[str]) -> list[str]:
    """``argv`` less ``flags`` and their values (``--flag V`` or ``--flag=V``)."""
    kept: list[str] = []
    words = iter(argv)
    for word in words:
        name = word.split("=", 1)[0]
        if name in flags:
            if "=" not in word:
                next(words, None)
            continue
        kept.append(word)
    return kept
