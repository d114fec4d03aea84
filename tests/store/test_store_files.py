"""The bottom room: one reader per file, one rule for damage, one writer per run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from reslab.errors import AnalysisError, CheckpointError
from reslab.report import files as report_files
from reslab.store import Result, RunDirLock, is_run_dir, json_ready, read_config, read_jsonl, read_metrics, read_result
from reslab.store.jsonfiles import PartialLineWarning
from reslab.store.lock import RunDirLockedError, lock_holder


def _write_metrics(run_dir, lines):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"model": "resnet20", "seed": 0}))
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))


def test_metrics_reader_names_file_and_line_of_a_damaged_line(tmp_path):
    _write_metrics(tmp_path / "run", ['{"epoch": 1}', '{"epoch": 2', '{"epoch": 3}'])
    with pytest.raises(CheckpointError, match=r"metrics\.jsonl' line 2 is damaged"):
        read_metrics(tmp_path / "run")
    # Tolerating a run still being written does not hide damage in the middle of the file.
    with pytest.raises(CheckpointError, match="line 2"):
        read_metrics(tmp_path / "run", partial_ok=True)


def test_partial_last_line_is_skipped_only_when_asked_and_said(tmp_path):
    _write_metrics(tmp_path / "run", ['{"epoch": 1}', '{"epoch": 2}', '{"epo'])
    with pytest.raises(CheckpointError, match="line 3"):
        read_metrics(tmp_path / "run")
    with pytest.warns(PartialLineWarning, match="skipped line 3"):
        rows = read_metrics(tmp_path / "run", partial_ok=True)
    assert [r["epoch"] for r in rows] == [1, 2]


def test_missing_metrics_is_empty_and_non_object_line_is_damage(tmp_path):
    assert read_jsonl(tmp_path / "absent.jsonl") == []
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n[1, 2]\n\n')
    with pytest.raises(Exception, match="line 2 is damaged.*JSON list"):
        read_jsonl(tmp_path / "x.jsonl")


def test_report_reader_skips_a_partial_line_and_reports_damage_on_stderr(tmp_path, capsys):
    _write_metrics(tmp_path / "run", ['{"epoch": 1}', '{"epo'])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialLineWarning)
        assert [r["epoch"] for r in report_files.read_metrics(tmp_path / "run")] == [1]
    _write_metrics(tmp_path / "bad", ['{"epo', '{"epoch": 2}'])
    assert report_files.read_metrics(tmp_path / "bad") == []
    assert "line 1 is damaged" in capsys.readouterr().err


def test_config_reader_and_the_one_is_run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert not is_run_dir(run)
    (run / "metrics.jsonl").write_text("")
    assert not is_run_dir(run)  # only config.json makes a run directory
    assert report_files.is_result_dir(run)  # ... but the report can show it
    (run / "config.json").write_text("{not json")
    assert is_run_dir(run)
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON.*cannot be read"):
        read_config(run)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_config(tmp_path / "nowhere")


@pytest.mark.parametrize("value, expected", [
    (float("nan"), None), (float("inf"), None), (np.float32(0.5), 0.5), (np.int64(3), 3), ((1, 2), [1, 2]),
    ({1: np.array(2.0)}, {"1": 2.0}),
])
def test_one_json_sanitiser(value, expected):
    assert json_ready(value) == expected


def test_result_codec_round_trip_and_damage(tmp_path):
    @dataclass
    class Toy(Result):
        analysis: ClassVar[str] = "toy"
        values: np.ndarray
        score: float

    path = Toy(values=np.arange(3.0), score=float("nan")).save(tmp_path)
    assert path.name == "toy.json" and path.with_suffix(".npz").is_file()
    back = Toy.load(tmp_path)
    assert back.values.tolist() == [0.0, 1.0, 2.0] and back.score is None
    path.with_suffix(".npz").unlink()
    with pytest.raises(AnalysisError, match="missing from the result's .npz"):
        read_result(path)
    assert read_result(path, missing_arrays="none")["values"] is None
    path.write_text("{")
    with pytest.raises(AnalysisError, match="not valid JSON"):
        read_result(path)


_HOLDER = """
import sys, time
from reslab.store import RunDirLock
with RunDirLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _start_holder(run_dir):
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_second_writer_stops_at_once_naming_directory_and_pid(tmp_path):
    run_dir = tmp_path / "run"
    holder = _start_holder(run_dir)
    try:
        started = time.perf_counter()
        with pytest.raises(RunDirLockedError, match=rf"{run_dir.name}.*being written by process {holder.pid}"):
            RunDirLock(run_dir).acquire()
        assert time.perf_counter() - started < 2
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_after_kill_9_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    holder = _start_holder(run_dir)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_holder(run_dir) == holder.pid  # the file stays behind ...
    with RunDirLock(run_dir):  # ... but the kernel released the lock with the process
        assert lock_holder(run_dir) == os.getpid()


def test_train_refuses_a_run_directory_another_process_is_writing(tmp_path):
    from reslab.errors import ConfigError
    from reslab.train import resolve_config, train

    run_dir = tmp_path / "r"
    holder = _start_holder(run_dir)
    try:
        config = resolve_config("digits-quick", model="cifar_resnet8", overrides={"out": str(run_dir), "quiet": True,
                                                                               "epochs": 1})
        with pytest.raises(ConfigError, match=f"being written by process {holder.pid}"):
            train(config)
        assert not (run_dir / "config.json").exists()  # nothing of the second writer landed
    finally:
        holder.kill()
        holder.wait()


def test_every_analysis_result_follows_the_one_contract():
    from reslab.analysis.gradients import GradientFlowResult
    from reslab.analysis.hessian import HessianResult
    from reslab.analysis.landscape import LandscapeResult
    from reslab.analysis.lesion import LesionResult
    from reslab.analysis.responses import ResponsesResult

    names = set()
    for cls in (GradientFlowResult, HessianResult, LandscapeResult, LesionResult, ResponsesResult):
        assert issubclass(cls, Result) and cls.analysis not in names
        names.add(cls.analysis)
