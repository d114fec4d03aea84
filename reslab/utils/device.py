"""Device selection."""

from __future__ import annotations

import torch

from reslab.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None`` into CUDA when available, else CPU; validate explicit names."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"--device {device!r} is not a device name; use 'cpu', 'cuda', 'cuda:1' or 'auto'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r} asks for CUDA, but no CUDA GPU is available here; use --device cpu")
    return resolved
