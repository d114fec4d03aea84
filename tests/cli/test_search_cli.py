"""``reslab search`` on the command line: one-line errors, no optuna for --help, and a search killed with
SIGKILL mid-trial that the same command resumes (finished trials kept, none counted twice, the killed
trial's run resumed from its checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reslab.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    return raised.value.code, capsys.readouterr()


@pytest.mark.parametrize("extra, words", [
    (["--space", "lr=loguniform:0:1"], "positive bounds"),
    (["--space", "lr"], "expected KEY=SPEC"),
    (["--space", "momentum=uniform:0.9:0.5"], "above the high bound"),
    (["--space", "colour=choice:red,blue"], "not a training setting"),
    (["--space", "lr=loguniform:1e-3:1", "--metric", "acc"], "--metric acc"),
    (["--space", "lr=loguniform:1e-3:1", "--set", "model=resnet56"], "--set model"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, words):
    pytest.importorskip("optuna")
    out = tmp_path / "search"
    code, captured = run_main(["search", "resnet20", "--data", "digits", "--out", str(out), *extra], capsys)
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("reslab search: error: ") and words in lines[0]
    assert not out.exists()


def test_missing_optuna_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    code, captured = run_main(["search", "resnet20", "--space", "lr=loguniform:1e-3:1", "--out",
                               str(tmp_path / "s")], capsys)
    assert code == 2
    assert captured.err.strip() == "reslab search: error: reslab search needs optuna: pip install 'reslab[search]'"


def test_help_does_not_import_optuna():
    probe = ("import sys, contextlib, io\nfrom reslab.cli.main import main\n"
             "for argv in (['--help'], ['search', '--help'], ['experiment', 'lr-depth', '--help']):\n"
             "    try:\n        with contextlib.redirect_stdout(io.StringIO()):\n            main(argv)\n"
             "    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('optuna', 'matplotlib', 'reslab.report') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def _search_json(out: Path) -> dict:
    try:
        return json.loads((out / "search.json").read_text())
    except (OSError, ValueError):
        return {}


def test_sqlite_search_killed_mid_study_resumes_keeping_finished_trials(tmp_path):
    optuna = pytest.importorskip("optuna")
    out = tmp_path / "search"
    epochs = 8
    command = [sys.executable, "-m", "reslab", "search", "cifar_resnet8", "--data", "digits", "--recipe",
               "digits-degradation", "--space", "lr=choice:0.05,0.1,0.15", "--sampler", "grid", "--trials", "3",
               "--epochs", str(epochs), "--pruner", "none", "--set", "threads=1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed_run = None
    deadline = time.monotonic() + 240
    try:
        # Kill the driver once a trial has finished and the next one has saved a checkpoint.
        while time.monotonic() < deadline and driver.poll() is None:
            trials = _search_json(out).get("trials") or []
            running = [t for t in trials if t["state"] == "RUNNING" and t.get("run")]
            if any(t["state"] == "COMPLETE" for t in trials) and running:
                run = out / running[0]["run"]
                if (run / "checkpoints" / "last.state.pt").is_file() and (run / "metrics.jsonl").is_file():
                    first_line = (run / "metrics.jsonl").read_text().splitlines()[0]
                    driver.send_signal(signal.SIGKILL)
                    killed_run, killed_number = running[0]["run"], running[0]["number"]
                    break
            time.sleep(0.05)
    finally:
        if driver.poll() is None and killed_run is None:
            driver.kill()
        driver.wait(timeout=60)
    assert killed_run is not None, driver.stderr.read()
    before = {t["number"]: t for t in _search_json(out)["trials"] if t["state"] == "COMPLETE"}
    assert before

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = json.loads((out / "search.json").read_text())
    trials = {t["number"]: t for t in after["trials"]}
    finished = [t for t in trials.values() if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3  # N trials in total, the killed one not counted
    for number, trial in before.items():  # finished trials kept as they were
        assert {k: trials[number][k] for k in ("state", "params", "value", "run")} == \
               {k: trial[k] for k in ("state", "params", "value", "run")}
    assert trials[killed_number]["state"] == "FAIL" and trials[killed_number]["interrupted"] is True
    again = [t for t in finished if t["run"] == killed_run]
    assert len(again) == 1 and again[0]["number"] > killed_number and again[0]["resumes_trial"] == killed_number
    assert "resumed" in done.stderr and f"trial {killed_number} was interrupted" in done.stderr
    assert sorted(t["params"]["lr"] for t in finished) == [0.05, 0.1, 0.15]
    # The killed trial's run resumed from its checkpoint: its first epoch's record is the one from before.
    lines = (out / killed_run / "metrics.jsonl").read_text().splitlines()
    assert lines[0] == first_line
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epochs + 1))
    # The study itself agrees.
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1 and "RUNNING" not in states
