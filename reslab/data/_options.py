"""Checking the keyword options a dataset loader receives."""

from __future__ import annotations

from typing import Any, Mapping

from reslab.errors import ConfigError


def check_options(dataset: str, options: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` for an option ``dataset`` does not take, listing those it does.

    allowed: option name -> one-line description (shown in the message).
    """
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(f"{k} ({v})" for k, v in allowed.items()) or "none"
        raise ConfigError(f"dataset {dataset!r} does not take option(s) {', '.join(unknown)}; valid options: {valid}")


def int_option(dataset: str, key: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else :class:`ConfigError` naming ``dataset`` and ``key``."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        number = None
    if number is None:
        raise ConfigError(f"dataset {dataset!r}: option {key}={value!r} must be an integer >= {minimum}")
    if number < minimum:
        raise ConfigError(f"dataset {dataset!r}: option {key}={value!r} must be an integer >= {minimum}")
    return number


def float_option(dataset: str, key: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high)``, else :class:`ConfigError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset {dataset!r}: option {key}={value!r} must be a number in [{low}, {high})") from None
    if not (low <= number < high):
        raise ConfigError(f"dataset {dataset!r}: option {key}={value!r} must be a number in [{low}, {high})")
    return number
