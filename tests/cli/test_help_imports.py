"""``reslab --help`` and every ``reslab COMMAND --help`` answer without importing matplotlib or the
report room, nor the engines of the launchers (ray, submitit, optuna): they run in a fresh interpreter, since this test session has imported both already."""

from __future__ import annotations

import subprocess
import sys

# ``reslab --help`` runs as ``python -m reslab --help`` does (reslab/__main__.py), then each command's --help.
PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["reslab", "--help"]
try:
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_module("reslab", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
from reslab.cli.main import main
for argv in ({commands}):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(list(argv))
    except SystemExit:
        pass
print(sorted(m for m in ("matplotlib", "reslab.report", "ray", "submitit", "optuna") if m in sys.modules))
"""


def test_reslab_help_imports_neither_matplotlib_nor_the_report_room_nor_an_engine():
    commands = "".join(repr([name, "--help"]) + ", " for name in ("train", "analyze", "experiment", "bench", "export",
                                                                          "sweep"))
    done = subprocess.run([sys.executable, "-c", PROBE.replace("{commands}", commands)], capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
