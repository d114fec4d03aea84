"""JSON and JSON-lines files: one reader, one writer, one sanitiser, one rule for damage.

* :func:`json_ready` turns what reslab computes into what JSON can hold: NaN and ±∞ become
  ``null`` (readers treat ``null`` as a missing value), NumPy scalars and 0-d arrays become
  Python numbers, arrays and torch tensors lists, tuples lists, paths strings, mapping keys strings.
* :func:`read_jsonl` reads one JSON object per line. A damaged line is an error naming the
  file and the line number, except where the caller reads a file that another process may be
  appending to (``partial_ok=True``): then a damaged *last* line is skipped, and said so with a
  warning — a damaged line anywhere else is still an error.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from reslab._version import __version__
from reslab.errors import ReslabError
from reslab.utils import atomic_write_text


class PartialLineWarning(UserWarning):
    """A JSON-lines file ended in a line still being written; it was skipped."""


def json_ready(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced (see the module docstring)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return json_ready(value.item())
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is loaded; this room does not load it
    if torch is not None and isinstance(value, torch.Tensor):
        return json_ready(value.tolist())
    return value


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (or a string/NumPy scalar of one), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def dumps_readable(value: Any, indent: int = 0) -> str:
    """JSON with one key per line but each list of numbers/strings on a single line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {dumps_readable(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{dumps_readable(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)


def write_json(path: str | Path, value: Any, *, indent: int | None = 1, readable: bool = False) -> Path:
    """Write ``json_ready(value)`` to ``path`` atomically (``readable``: :func:`dumps_readable` layout)."""
    value = json_ready(value)
    text = dumps_readable(value) if readable else json.dumps(value, indent=indent, allow_nan=False)
    atomic_write_text(Path(path), text + "\n")
    return Path(path)


def read_json(path: str | Path, *, error: type[ReslabError] = ReslabError, what: str = "file") -> Any:
    """The parsed JSON file; ``error`` (a :class:`ReslabError` type) naming the file when it is missing or damaged."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(path)!r} is corrupt (not valid JSON: {exc})") from None


def read_jsonl(path: str | Path, *, partial_ok: bool = False, error: type[ReslabError] = ReslabError
               ) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per line (a missing file → ``[]``; blank lines ignored).

    A line that is not a JSON object raises ``error`` naming the file and line number; with
    ``partial_ok`` (the file may be mid-write by another process) a damaged *last* line is
    skipped with a :class:`PartialLineWarning` instead.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{str(path)!r} cannot be read ({exc})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    rows = []
    for position, (number, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
        except ValueError as exc:
            if partial_ok and position == len(numbered) - 1:
                warnings.warn(f"{path}: skipped line {number}, which is still being written or was cut short",
                              PartialLineWarning, stacklevel=2)
                break
            raise error(f"{str(path)!r} line {number} is damaged ({exc}); the file was edited or cut short — "
                        "restore it, or delete the line to keep the others") from None
        rows.append(row)
    return rows


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Rewrite ``path`` with one JSON object per row, atomically (readers never see half a file)."""
    lines = [json.dumps(json_ready(dict(row)), allow_nan=False) for row in rows]
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


def utc_now() -> str:
    """The time now in UTC, ISO 8601 to the second (``2026-12-02T03:31:28+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def versions() -> dict[str, str]:
    """Software versions recorded with every run and result."""
    import torch  # noqa: PLC0415 - lazy: the report reads this room and never needs torch otherwise

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "reslab": __version__}


def natural_key(text: Any) -> list:
    """Sort key that orders ``resnet8 < resnet20 < resnet110``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


__all__ = [
    "PartialLineWarning", "dumps_readable", "finite_number", "json_ready", "natural_key", "read_json", "read_jsonl", "utc_now",
    "versions", "write_json", "write_jsonl",
]
