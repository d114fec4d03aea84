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
