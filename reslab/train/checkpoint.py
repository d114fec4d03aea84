"""Checkpoint files: weights in safetensors, training state in a ``weights_only`` torch file.

Every write is atomic (temp file in the same directory, fsync, rename), so a crash or a kill
during a save leaves the previous file intact and loadable.

``last.state.pt`` is self-contained for resuming: it holds the model weights too (next to the
optimizer, the EMA, the RNG states, the loader position and the metrics so far). It is written
*after* ``last.safetensors``/``ema.safetensors``, so it is the commit point: a crash between
the writes leaves an older but consistent ``last.state.pt`` to resume from.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from reslab.errors import CheckpointError
from reslab.store.rundir import CHECKPOINT_DIR
from reslab.utils import atomic_path

STATE_FORMAT = 1
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.safetensors")


# -- weights --------------------------------------------------------------------------------------
def cpu_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous (NCHW), CPU copies: what safetensors stores."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> None:
    """Write a state dict to ``path`` (safetensors) atomically; ``metadata`` values become strings."""
    tensors = cpu_state_dict(state)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


RUN_CHECKPOINT_HINT = "use another checkpoint of the run (see list_checkpoints) or retrain"


def load_weights(path: str | Path, hint: str = RUN_CHECKPOINT_HINT) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: (state dict on CPU, metadata). CheckpointError if missing or corrupt.

    ``hint`` ends the message about a damaged file with what to do (a run's checkpoint has
    siblings to fall back on; a file on its own does not).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} {safetensors_problem(path, exc)}; {hint}") from None
    return tensors, metadata


def safetensors_problem(path: Path, exc: Exception) -> str:
    """What is wrong with a safetensors file that does not load, in words (its layout: an 8-byte
    little-endian header length, a JSON header giving each tensor's byte range, then the data)."""
    import json  # noqa: PLC0415 - only a damaged file needs it

    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes)"
    if size < 8:
        return f"is {size} bytes long, too short for a safetensors file (which starts with an 8-byte header length)"
    with open(path, "rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        start = handle.read(1)
        if start != b"{":
            return "is corrupt or not a safetensors file (it does not start with a header length and a JSON header)"
        if header_size > size - 8:
            return (f"is truncated: its header alone needs {header_size} bytes after the first 8, and the file has "
                    f"{size - 8}")
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_size))
        except ValueError:
            return "has a damaged header (not valid JSON)"
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and len(entry.get("data_offsets") or []) == 2]
    data = size - 8 - header_size
    if ends and max(ends) > data:
        return (f"is truncated: its header lists {len(ends)} tensors needing {max(ends)} bytes of data, the file "
                f"holds {data} ({100 * data / max(ends):.0f} %); it was cut short, e.g. by an interrupted copy "
                "or download")
    return f"is corrupt ({exc})"


def check_state_matches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str,
                        hint: str = "was it saved from a different model?") -> None:
    """CheckpointError unless ``state`` has exactly ``expected``'s keys and shapes.

    ``what`` names the state in the message (e.g. ``"checkpoint 'runs/r20/...'"``); ``hint``
    ends it with what to do.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{what} does not match the model: {'; '.join(parts)}; {hint}")
    for key, value in state.items():
        if tuple(expected[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{what} does not match the model: {key} has shape {tuple(value.shape)}, "
                                  f"the model's is {tuple(expected[key].shape)}")


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` with a CheckpointError that says what did not match."""
    name = getattr(model, "model_name", "") or type(model).__name__
    check_state_matches(model.state_dict(), state, f"checkpoint {source}",
                        hint=f"was it saved from a model other than {name}?")
    model.load_state_dict(state)


# -- training state -------------------------------------------------------------------------------
def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` a state dict of tensors/containers/numbers atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; CheckpointError if missing, corrupt or of another format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state {str(path)!r} does not exist; the run has no resumable checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"training state {str(path)!r} is corrupt ({type(exc).__name__}: {exc}); "
                              "the run cannot be resumed from it") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"training state {str(path)!r} is not a reslab training state (format {STATE_FORMAT})")
    return state


# -- random number generators ----------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """The states of torch (CPU and CUDA), NumPy and Python generators, as weights_only-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# -- names ----------------------------------------------------------------------------------------
def epoch_file(epoch: int) -> str:
    return f"epoch_{epoch:04d}.safetensors"


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """The epochs ``k`` with a saved ``checkpoints/epoch_{k:04d}.safetensors``, ascending.

    (``init``, ``last`` and ``ema`` are always named by those words.)
    """
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory: it has no {CHECKPOINT_DIR}/ folder")
    epochs = []
    for path in directory.iterdir():
        match = _EPOCH_FILE.fullmatch(path.name)
        if match:
            epochs.append(int(match[1]))
    return sorted(epochs)


def checkpoint_path(run_dir: str | Path, checkpoint: str | Path = "last") -> Path:
    """The weights file that ``checkpoint`` names in ``run_dir``.

    checkpoint: ``"last"``, ``"init"``, ``"ema"``, ``"epoch_5"`` (or ``"epoch_0005"``, ``5``),
    or a path to a ``.safetensors`` file.
    """
    directory = Path(run_dir) / CHECKPOINT_DIR
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
        checkpoint = f"epoch_{checkpoint}"
    name = str(checkpoint)
    if name in ("last", "init", "ema"):
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            if name == "ema":
                raise CheckpointError(f"run {str(run_dir)!r} has no EMA weights ({path.name}); it was trained "
                                      "without ema=true — use 'last'")
            raise CheckpointError(f"run {str(run_dir)!r} has no {name!r} checkpoint ({path} is missing)")
        return path
    match = re.fullmatch(r"(?:epoch_?)?(\d+)", name)
    if match:
        epoch = int(match[1])
        path = directory / epoch_file(epoch)
        if not path.is_file():
            saved = list_checkpoints(run_dir) if directory.is_dir() else []
            listing = ", ".join(f"epoch_{e}" for e in saved) or "none (train with --set save_every=N)"
            raise CheckpointError(f"run {str(run_dir)!r} has no checkpoint for epoch {epoch}; saved epochs: {listing}; "
                                  "also 'init', 'last' and (with EMA) 'ema'")
        return path
    path = Path(checkpoint)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
        return path
    raise CheckpointError(f"checkpoint {name!r} is not valid; use 'last', 'init', 'ema', 'epoch_K' or a .safetensors path")
