"""The result contract every analysis follows: a dataclass saved as ``NAME.json`` + ``NAME.npz``.

* ``NAME.json``: one JSON object with ``"analysis"`` (e.g. ``"gradients"``), ``"format"`` (1),
  ``"created"`` (UTC, ISO 8601), ``"versions"`` and the dataclass fields. A NumPy array field
  is replaced by ``{"__array__": KEY}``; NaN and ±∞ are written as ``null``.
* ``NAME.npz``: the arrays, under those keys (written only when the result holds arrays; a
  stale one is removed, so readers never merge arrays of another computation).

:meth:`Result.save` writes both atomically; :func:`read_result` reads them back as a dict (the
report's view) and :meth:`Result.load` as the dataclass (the library's view).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from reslab.errors import AnalysisError
from reslab.store.jsonfiles import (
    dumps_readable,
    json_ready,
    read_json,
    utc_now,
    versions,
)
from reslab.utils import atomic_path, atomic_write_text

RESULT_FORMAT = 1

#: Settings that change how fast a result is computed, not what it is: a result that differs from
#: the file on disk only in these replaces it without ``force``.
SPEED_SETTINGS = frozenset({
    "device", "batch_size", "workers", "threads", "method", "chunk_size", "channels_last", "progress",
    "seconds_now", "points_per_s", "points_evaluated_now", "bn_folded", "pointwise_fused", "weights_sha256",
})


@dataclasses.dataclass
class Result:
    """Base of every analysis result: ``save(path)`` writes JSON (+ NPZ), ``load(path)`` reads it.

    Subclasses are dataclasses and set the class attribute ``analysis`` (the file's
    ``"analysis"`` field and default file name). Fields may be numbers, strings, lists, dicts,
    ``None``, NumPy arrays, tensors, other dataclasses or lists of them.
    """

    analysis: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:
        """The fields as the JSON file holds them (arrays are moved to the ``.npz`` by :meth:`save`)."""
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def extra_arrays(self, document: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Arrays the ``.npz`` holds besides the fields' (a subclass whose readers need more)."""
        return {}

    def default_path(self, directory: str | Path) -> Path:
        """Where :meth:`save` writes in ``directory`` (``DIR/<analysis>.json``)."""
        return Path(directory) / f"{self.analysis}.json"

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write ``path`` (a ``.json`` file, or a directory → :meth:`default_path`) atomically.

        Returns the JSON path. Arrays go to the ``.npz`` file next to it. A file there that holds
        this analysis of another target or with other settings (beyond :data:`SPEED_SETTINGS`) is
        not replaced unless ``force``: AnalysisError says what differs.
        """
        path = Path(path)
        if path.suffix != ".json":
            path = self.default_path(path)
        arrays: dict[str, np.ndarray] = {}
        body = _extract_arrays(self.to_dict(), arrays, prefix="")
        if not force:
            check_replaceable(path, self.analysis, json_ready(body))
        document = {"analysis": self.analysis, "format": RESULT_FORMAT, "created": utc_now(),
                    "versions": versions(), **body}
        arrays.update(self.extra_arrays(json_ready(document)))
        npz_path = path.with_suffix(".npz")
        if arrays:
            with atomic_path(npz_path) as tmp:
                with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npz" to the temp name
                    np.savez(handle, **arrays)
        elif npz_path.exists():
            npz_path.unlink()
        atomic_write_text(path, dumps_readable(json_ready(document)) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path):
        """Read a result written by :meth:`save` (``path``: the ``.json`` file or its directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{cls.analysis}.json"
        data = read_result(path)
        if data.get("analysis") != cls.analysis:
            raise AnalysisError(f"{path} holds a {data.get('analysis')!r} result, not {cls.analysis!r}")
        return from_dict(cls, data)


def result_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What makes two results of one analysis different computations: ``key: old → new`` lines."""
    differences = []
    for part in ("target", "settings"):
        a, b = old.get(part) or {}, new.get(part) or {}
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            continue
        for key in sorted(set(a) | set(b)):
            if key not in SPEED_SETTINGS and a.get(key) != b.get(key):
                differences.append(f"{key} {a.get(key)!r} → {b.get(key)!r}")
    return differences


def check_replaceable(path: Path, analysis: str, new: Mapping[str, Any]) -> None:
    """AnalysisError if ``path`` holds ``analysis`` of another target or settings (see :meth:`Result.save`)."""
    if not path.is_file():
        return
    try:
        old = read_json(path, error=AnalysisError)
    except AnalysisError:
        return  # a damaged file holds nothing worth keeping
    if not isinstance(old, Mapping) or old.get("analysis") != analysis:
        return
    differences = result_differences(old, new)
    if _in_its_own_run(path, new):
        # A result in RUN_DIR/analysis belongs to that run wherever it now lies: a moved or copied
        # run directory is the same computation.
        differences = [d for d in differences if not d.startswith("run_dir ")]
    if differences:
        listing = ", ".join(differences[:4]) + (f" and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise AnalysisError(f"{path} holds a {analysis} result of another computation ({listing}); pass --force "
                            "(force=True) to replace it and its plots, or --out DIR to keep both")


def _in_its_own_run(path: Path, new: Mapping[str, Any]) -> bool:
    """Whether ``path`` lies in the analysis folder (or directly in) the new result's run directory."""
    target = new.get("target")
    run_dir = target.get("run_dir") if isinstance(target, Mapping) else None
    if not run_dir:
        return False
    try:
        run = Path(run_dir).resolve()
        return path.resolve().parent in (run, run / "analysis")
    except OSError:
        return False


def read_result(path: str | Path, *, missing_arrays: str = "error") -> dict[str, Any]:
    """A result JSON as a dict, with its arrays (from the ``.npz`` next to it) put back.

    AnalysisError naming the file when it is missing or damaged. ``missing_arrays``:
    ``"error"`` (default) or ``"none"`` — an array the ``.npz`` lacks becomes ``None`` (the
    report then skips the plots that need it).
    """
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"result file {path} does not exist; run the analysis first")
    try:
        data = read_json(path, error=AnalysisError, what="result file")
    except AnalysisError as exc:
        raise AnalysisError(f"{exc}; delete it and run the analysis again") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"result file {path} holds no JSON object; delete it and run the analysis again")
    arrays: dict[str, np.ndarray] = {}
    npz_path = path.with_suffix(".npz")
    if npz_path.is_file():
        try:
            with np.load(npz_path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError) as exc:
            if missing_arrays == "error":
                raise AnalysisError(f"array file {npz_path} is damaged ({exc}); run the analysis again") from None
    return _insert_arrays(data, arrays, missing_arrays == "error")


def from_dict(cls, data: Mapping[str, Any]):
    """Build dataclass ``cls`` from a dict, recursing into dataclass-typed fields; extra keys are ignored."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field_ in dataclasses.fields(cls):
        if field_.name in data:
            kwargs[field_.name] = _convert(hints.get(field_.name, Any), data[field_.name])
    return cls(**kwargs)


def _convert(hint, value):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value)
    if origin is list and typing.get_args(hint):
        return [_convert(typing.get_args(hint)[0], v) for v in value]
    if hint is np.ndarray:
        return np.asarray(value)
    return value


def to_plain(value):
    """Dataclasses → dicts, tensors → NumPy arrays, tuples → lists, paths → strings, NumPy scalars → numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor, without importing torch here
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _extract_arrays(value, arrays: dict, prefix: str):
    if isinstance(value, np.ndarray):
        key = re.sub(r"[^A-Za-z0-9_]+", "_", prefix).strip("_") or "array"
        while key in arrays:
            key += "_"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {k: _extract_arrays(v, arrays, f"{prefix}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_extract_arrays(v, arrays, f"{prefix}.{i}") for i, v in enumerate(value)]
    return value


def _insert_arrays(value, arrays: dict, strict: bool):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            if value["__array__"] not in arrays:
                if strict:
                    raise AnalysisError(f"array {value['__array__']!r} is missing from the result's .npz file")
                return None
            return arrays[value["__array__"]]
        return {k: _insert_arrays(v, arrays, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [_insert_arrays(v, arrays, strict) for v in value]
    return value


__all__ = ["RESULT_FORMAT", "Result", "from_dict", "read_result", "to_plain"]
