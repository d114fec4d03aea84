"""Opt-in download of a dataset archive: stream, check md5, extract safely and atomically.

Only called when the user passes ``--download`` (``download=True``). The archive streams to a
hidden temporary file next to the destination; only after its md5 matches is it extracted,
into a hidden temporary directory, and the expected top-level directory is then renamed into
place in one step. On any failure the temporaries are removed, so nothing half-downloaded or
half-extracted is ever left where a loader would find it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from reslab.errors import DatasetError

_CHUNK = 1 << 20


def _fetch(url: str, target: Path, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``target``; return the md5 hex digest of the bytes written."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            total = response.headers.get("Content-Length")
            bar = tqdm(total=int(total) if total and total.isdigit() else None, unit="B", unit_scale=True,
                       unit_divisor=1024, desc=f"downloading {PurePosixPath(url).name}",
                       disable=(None if progress else True), file=sys.stderr, leave=False)
            with bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"could not download {url}: {reason}. Check the connection, or download the file "
                           f"by hand and extract it into {target.parent}") from exc
    return digest.hexdigest()


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
    """Reject members that would land outside the extraction directory or are not plain files/dirs."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")) or ":" in member.name:
        raise DatasetError(f"archive {archive} contains the unsafe path {member.name!r} (it would be written "
                           "outside the data directory); refusing to extract it")
    if not (member.isfile() or member.isdir()):
        raise DatasetError(f"archive {archive} contains {member.name!r}, which is not a regular file or directory "
                           "(links and devices are refused); refusing to extract it")


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract the tar archive ``archive`` into ``destination`` after checking every member."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, str(archive))
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the stdlib's own safety net too
                tar.extractall(destination, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; members were checked above
                tar.extractall(destination, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"archive {archive} is not a readable tar file ({exc}); download it again") from exc


def download_and_extract(url: str, parent: str | os.PathLike, expected_dir: str, md5: str | None,
                         progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url``, check its ``md5``, and extract its ``expected_dir`` into ``parent``.

    Returns ``parent / expected_dir``. Raises :class:`DatasetError` on a network failure, an md5
    mismatch, an unsafe or unreadable archive, or an archive without ``expected_dir``; in every
    such case ``parent`` is left as it was (apart from being created).
    """
    parent = Path(parent)
    final = parent / expected_dir
    if final.exists():
        raise DatasetError(f"{final} already exists but is incomplete; remove it (or move it away) and run "
                           "again with --download")
    parent.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(url).name or "download"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=parent)
    os.close(fd)
    archive = Path(tmp_name)
    staging: Path | None = None
    try:
        got = _fetch(url, archive, progress, timeout)
        if md5 is not None and got.lower() != md5.lower():
            raise DatasetError(f"downloaded {url} has md5 {got}, expected {md5}: the file is corrupt or not the "
                               "official archive. Nothing was extracted; try again, or download it by hand")
        staging = Path(tempfile.mkdtemp(prefix=f".{expected_dir}.", suffix=".extract", dir=parent))
        safe_extract(archive, staging)
        extracted = staging / expected_dir
        if not extracted.is_dir():
            found = sorted(p.name for p in staging.iterdir())
            raise DatasetError(f"archive from {url} does not contain the directory {expected_dir}/ "
                               f"(it holds {found}); is it the right archive?")
        os.replace(extracted, final)  # one rename: the loader sees all of it or none of it
    finally:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return final
