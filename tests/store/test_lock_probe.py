"""``check_unlocked``: a busy run directory is refused at once, and looking creates nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reslab.store import RunDirLock
from reslab.store.lock import RunDirLockedError, check_unlocked

_HOLDER = """
import sys, time
from reslab.store import RunDirLock
with RunDirLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_check_unlocked_refuses_a_held_directory_and_creates_nothing(tmp_path):
    missing = tmp_path / "a" / "run"
    check_unlocked(missing)  # free, and still absent
    assert not (tmp_path / "a").exists()
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirLockedError, match=rf"being written by process {holder.pid}"):
            check_unlocked(run_dir)
    finally:
        holder.kill()
        holder.wait()
    check_unlocked(run_dir)  # released with the process
    with RunDirLock(run_dir):
        check_unlocked(run_dir)  # this process's own lock does not stop it
