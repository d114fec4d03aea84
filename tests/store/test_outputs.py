"""The one output-file check every command makes before it works."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reslab.errors import ConfigError
from reslab.store import check_output_file


def test_output_check_refuses_what_could_not_be_written_and_creates_nothing(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    refused = {
        str(tmp_path / "folder"): "names a directory; give a file name, such as",
        str(tmp_path / "not_yet") + os.sep: "names a directory",
        str(tmp_path / "a_file" / "x.json"): "is a file, not a directory",
        "": "the file name is empty",
    }
    if Path("/proc/self").is_dir():  # a pseudo file system: root may write everywhere but here
        refused["/proc/nope/x.onnx"] = "nothing can be written in /proc"
    for path, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            check_output_file(path, "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder"]  # no probe left, nothing created


def test_output_check_replaces_an_existing_file_only_when_told(tmp_path):
    kept = tmp_path / "precious.onnx"
    kept.write_text("mine")
    with pytest.raises(ConfigError, match=r"-o .*precious\.onnx: the file exists; pass --force to replace it"):
        check_output_file(kept, "-o")
    assert check_output_file(kept, "-o", force=True) == kept and kept.read_text() == "mine"
    new = tmp_path / "new" / "deeper" / "out.json"
    assert check_output_file(new, "-o") == new and not (tmp_path / "new").exists()  # made when written


def test_a_result_in_a_moved_run_directory_is_replaced_without_force(tmp_path):
    """Copying or moving a run directory must not make its own analyses 'another computation'."""
    import json

    from reslab.store.results import check_replaceable
    from reslab.errors import AnalysisError

    def result(run_dir, samples=100):
        return {"analysis": "responses", "target": {"label": "resnet20-s0", "run_dir": str(run_dir)},
                "settings": {"samples": samples}}

    moved = tmp_path / "moved" / "resnet20-s0"
    (moved / "analysis").mkdir(parents=True)
    path = moved / "analysis" / "responses.json"
    path.write_text(json.dumps(result("/somewhere/else/resnet20-s0")))
    check_replaceable(path, "responses", result(moved))  # the same run, moved: no error
    with pytest.raises(AnalysisError, match="another computation.*samples 100 → 5"):
        check_replaceable(path, "responses", result(moved, samples=5))

    shared = tmp_path / "shared-out" / "responses.json"  # --out DIR: a result of some other run
    shared.parent.mkdir()
    shared.write_text(json.dumps(result("/somewhere/else/resnet20-s0")))
    with pytest.raises(AnalysisError, match="another computation.*run_dir"):
        check_replaceable(shared, "responses", result(moved))
