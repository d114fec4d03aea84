"""Opt-in download against a loopback HTTP server serving archives the tests build."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from reslab.data import load_dataset
from reslab.errors import DatasetError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (www directory, base URL, list of requested paths)."""
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _tar_directory(source: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_with_right_md5_extracts_and_loads(tmp_path, server, make_cifar10):
    www, base, requests = server
    source = make_cifar10(tmp_path / "build")
    md5 = _tar_directory(source, www / "cifar-10-python.tar.gz")
    dest = tmp_path / "dest"
    ds = load_dataset("cifar10", data_dir=dest, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5,
                      progress=False)
    assert ds.num_train == 30 and ds.num_test == 5
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]  # no temporaries left
    assert requests == ["/cifar-10-python.tar.gz"]
    # Present now: loading again makes no request.
    load_dataset("cifar10", data_dir=dest, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert len(requests) == 1


def test_download_cifar100_layout(tmp_path, server, make_cifar100):
    www, base, _ = server
    md5 = _tar_directory(make_cifar100(tmp_path / "build"), www / "c100.tar.gz")
    ds = load_dataset("cifar100", data_dir=tmp_path / "dest", download=True, url=f"{base}/c100.tar.gz", md5=md5)
    assert ds.num_classes == 100 and ds.num_train == 12


def test_wrong_md5_leaves_nothing(tmp_path, server, make_cifar10):
    www, base, _ = server
    _tar_directory(make_cifar10(tmp_path / "build"), www / "a.tar.gz")
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match=r"md5 [0-9a-f]{32}, expected 0{32}.*Nothing was extracted"):
        load_dataset("cifar10", data_dir=dest, download=True, url=f"{base}/a.tar.gz", md5="0" * 32)
    assert list(dest.iterdir()) == []


def test_no_download_without_the_flag(tmp_path, server, make_cifar10):
    www, base, requests = server
    md5 = _tar_directory(make_cifar10(tmp_path / "build"), www / "a.tar.gz")
    with pytest.raises(DatasetError, match="--download"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", url=f"{base}/a.tar.gz", md5=md5)
    assert requests == []


def test_path_traversal_is_refused(tmp_path, server):
    www, base, _ = server
    archive = www / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("cifar-10-batches-py/batches.meta", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match=r"unsafe path '../escaped.txt'"):
        load_dataset("cifar10", data_dir=dest, download=True, url=f"{base}/evil.tar.gz", md5=md5)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_symlink_member_is_refused(tmp_path, server):
    www, base, _ = server
    archive = www / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(DatasetError, match="not a regular file or directory"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", download=True, url=f"{base}/link.tar.gz", md5=md5)
    assert list((tmp_path / "dest").iterdir()) == []


def test_archive_without_the_expected_directory(tmp_path, server, make_cifar100):
    www, base, _ = server
    md5 = _tar_directory(make_cifar100(tmp_path / "build"), www / "wrong.tar.gz")
    with pytest.raises(DatasetError, match=r"does not contain the directory cifar-10-batches-py/"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", download=True, url=f"{base}/wrong.tar.gz", md5=md5)
    assert list((tmp_path / "dest").iterdir()) == []


def test_unreachable_server_and_missing_file(tmp_path, server):
    _, base, _ = server
    with pytest.raises(DatasetError, match=r"could not download .*/absent.tar.gz"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", download=True, url=f"{base}/absent.tar.gz")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DatasetError, match="could not download"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", download=True, url=f"http://127.0.0.1:{port}/a.tar.gz")
    assert list((tmp_path / "dest").iterdir()) == []


def test_incomplete_existing_directory_is_not_overwritten(tmp_path, server, make_cifar10):
    www, base, requests = server
    md5 = _tar_directory(make_cifar10(tmp_path / "build"), www / "a.tar.gz")
    existing = make_cifar10(tmp_path / "dest")
    (existing / "data_batch_2").unlink()
    with pytest.raises(DatasetError, match=r"already exists but is incomplete"):
        load_dataset("cifar10", data_dir=tmp_path / "dest", download=True, url=f"{base}/a.tar.gz", md5=md5)
    assert (existing / "data_batch_1").is_file() and requests == []
