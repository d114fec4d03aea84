"""Settings as data: one dataclass per analysis or experiment, and everything else derived from it.

A settings class lists each option once — its type, its default and a line of help::

    @dataclass(frozen=True)
    class HessianSettings(Settings):
        samples: int | None = setting(512, "images the loss averages over", minimum=1)
        top_k: int = setting(5, "eigenvalues of largest magnitude (0 = skip)", minimum=0)
        min_method: Literal["lanczos", "power"] = setting("lanczos", "how λmin is found")

and from that one place come

* validation (:meth:`Settings.__post_init__`): values are coerced to the field's type hint
  (``"5"`` → 5 for an ``int``, ``"true"`` → True for a ``bool``), ``Literal`` choices and
  ``minimum``/``maximum`` are checked, and a bad value is a :class:`ConfigError` that names the
  option as the user wrote it (``--top-k``);
* the command line (:func:`add_arguments`, :func:`given`): one flag per field, whose default
  and ``--help`` are the class default (``None`` where an experiment's budget decides);
* the Python API: functions take ``settings=None, **changes`` and call :meth:`Settings.of`,
  so keyword arguments keep working and have the class's defaults;
* reproducing command lines (:func:`to_arguments`) and ``KEY=VALUE`` options
  (:func:`parse_key_values`, the one parser of ``--set``, ``--data-option`` and
  ``--model-option``).

Nothing here knows any particular analysis: the rooms above define their classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from reslab.errors import ConfigError
from reslab.store.jsonfiles import json_ready

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_MISSING = dataclasses.MISSING


class SettingValueError(ConfigError):
    """A value that does not fit its setting's type; ``expected`` says what would (``"a number"``)."""

    def __init__(self, name: str, value: Any, expected: str):
        super().__init__(f"{name}: {value!r} is not valid; expected {expected}")
        self.name, self.value, self.expected = name, value, expected


@dataclass(frozen=True)
class Option:
    """What a settings field needs besides its type and default (kept in the field's metadata)."""

    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    flag: str | None = None  # the command-line flag; default ``--field-name``
    metavar: str | None = None
    cli: bool = True  # False: Python only (e.g. tensors), or the command adds its own flag


def setting(default: Any = _MISSING, help: str = "", *, minimum: float | None = None,  # noqa: A002 - argparse's word
            maximum: float | None = None, flag: str | None = None, metavar: str | None = None, cli: bool = True,
            default_factory: Any = _MISSING) -> Any:
    """A dataclass field with an :class:`Option` (its help, range and flag)."""
    metadata = {"option": Option(help, minimum, maximum, flag, metavar, cli)}
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def option_of(f: dataclasses.Field) -> Option:
    return f.metadata.get("option") or Option()


def flag_of(f: dataclasses.Field) -> str:
    return option_of(f).flag or "--" + f.name.replace("_", "-")


class Settings:
    """Base of the settings dataclasses (declare subclasses ``@dataclass(frozen=True)``)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = coerce(hints.get(f.name, Any), getattr(self, f.name), flag_of(f))
            option = option_of(f)
            _check_range(value, option, flag_of(f))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules that involve several fields (override; raise ConfigError)."""

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def of(cls, settings: "Settings | Mapping[str, Any] | None" = None, **changes: Any):
        """``settings`` (an instance, a mapping or ``None`` for the defaults) with ``changes`` applied."""
        if settings is None:
            base = cls()
        elif isinstance(settings, cls):
            base = settings
        elif isinstance(settings, Mapping):
            base = cls.from_dict(settings)
        else:
            raise ConfigError(f"settings must be a {cls.__name__}, a mapping or None, got {type(settings).__name__}")
        return base.replace(**changes) if changes else base

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "settings", strict: bool = True):
        """Build from a mapping; unknown keys are an error (``strict``) or ignored."""
        names = cls.field_names()
        unknown = [k for k in values if k not in names]
        if unknown and strict:
            raise unknown_setting(unknown[0], names, where)
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes: Any):
        """A validated copy with ``changes`` applied (unknown names are an error with a suggestion)."""
        names = self.field_names()
        for key in changes:
            if key not in names:
                raise unknown_setting(key, names, type(self).__name__)
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def default(cls, name: str) -> Any:
        """The class default of field ``name``."""
        for f in fields(cls):
            if f.name == name:
                return f.default_factory() if f.default_factory is not _MISSING else f.default
        raise KeyError(name)

    # -- reading -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (nested settings as dicts, tuples as lists)."""
        return json_ready(dataclasses.asdict(self))

    def changed(self, base: "Settings | None" = None) -> dict[str, Any]:
        """The fields whose values differ from ``base`` (default: the class defaults)."""
        base = base if base is not None else type(self)()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}


def unknown_setting(key: str, names: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(names), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}; settings are: {', '.join(names)}")


# -- coercion from the type hint ----------------------------------------------------------------
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def coerce(hint: Any, value: Any, name: str) -> Any:
    """``value`` converted to type ``hint`` (command-line strings included); ConfigError naming ``name``."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and (value is None or (isinstance(value, str)
                                                     and value.strip().lower() in ("none", "null", ""))):
            return None
        errors = []
        for option in options:
            try:
                return coerce(option, value, name)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else SettingValueError(
            name, value, " or ".join(_describe(o) for o in options))
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                return choice
        raise SettingValueError(name, value, "one of " + ", ".join(map(str, args)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise SettingValueError(name, value, "true or false")
    if hint is int:
        return _as_int(value, name)
    if hint is float:
        if isinstance(value, bool):
            raise SettingValueError(name, value, "a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise SettingValueError(name, value, "a number")
    if hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise SettingValueError(name, value, "a string")
    if origin in (list, tuple) or hint in (list, tuple):
        return _as_sequence(hint, origin or hint, args, value, name)
    if origin is dict or hint is dict:
        if isinstance(value, Mapping):
            return {str(k): v for k, v in value.items()}
        raise SettingValueError(name, value, "a table of options")
    if isinstance(hint, type) and issubclass(hint, Settings):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return hint.from_dict(value, where=name)
        raise SettingValueError(name, value, f"{hint.__name__} settings")
    return value


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise SettingValueError(name, value, "a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)  # "64e3"
            except ValueError:
                number = math.nan
            if number.is_integer():
                return int(number)
    raise SettingValueError(name, value, "a whole number")


def _as_sequence(hint, kind, args, value, name):
    items = value
    if isinstance(value, str):
        text = value.strip().strip("[]")
        items = [part.strip().strip("'\"") for part in text.replace(",", " ").split() if part]
    elif isinstance(value, (list, tuple)):
        # A flag's words may each hold several items: "--freeze stem,layer1" = "--freeze stem layer1".
        items = [part for item in value
                 for part in ([p.strip() for p in item.split(",") if p.strip()] if isinstance(item, str) else [item])]
    else:
        items = [value]
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            raise SettingValueError(name, value, f"{len(args)} values")
        return tuple(coerce(a, v, name) for a, v in zip(args, items))
    item_hint = args[0] if args else Any
    converted = [coerce(item_hint, v, name) for v in items]
    return tuple(converted) if kind is tuple else converted


def _describe(hint) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _check_range(value: Any, option: Option, name: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(f"{name} must be at least {option.minimum:g}, got {value}")
    if option.maximum is not None and value > option.maximum:
        raise ConfigError(f"{name} must be at most {option.maximum:g}, got {value}")


# -- the command line -----------------------------------------------------------------------------
def add_arguments(parser, cls: type[Settings], *, include: Iterable[str] | None = None,
                  exclude: Iterable[str] = (), defaults: Mapping[str, str] | None = None,
                  helps: Mapping[str, str] | None = None, unset: str | None = None) -> list[str]:
    """Add one flag per field of ``cls`` to ``parser`` (or an argument group); returns their names.

    Each flag's default is the class default (``None`` where an experiment's budget decides),
    and its help ends with it — or with ``defaults[name]``, the text saying what decides.
    ``unset``: flags not given stay out of the parsed namespace (another source, such as a
    recipe, fills them) and every help ends with ``(default: {unset})``.
    """
    hints = typing.get_type_hints(cls)
    chosen = set(include) if include is not None else None
    added = []
    for f in fields(cls):
        option = option_of(f)
        if not option.cli or f.name in set(exclude) or (chosen is not None and f.name not in chosen):
            continue
        hint = hints[f.name]
        text = (helps or {}).get(f.name, option.help)
        shown = (defaults or {}).get(f.name)
        if shown is None:
            shown = _default_text(cls.default(f.name))
        if unset is not None:
            shown = "" if "default" in text else unset
        kwargs: dict[str, Any] = {"dest": f.name,
                                  "default": argparse.SUPPRESS if unset is not None else cls.default(f.name),
                                  "help": f"{text} (default {shown})" if shown else text}
        base = _without_none(hint)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            item = base
            if typing.get_origin(base) is list or (typing.get_origin(base) is tuple
                                                   and typing.get_args(base)[-1:] == (Ellipsis,)):
                kwargs["nargs"] = "+"
                item = typing.get_args(base)[0]
            if typing.get_origin(item) is Literal:
                kwargs["choices"] = list(typing.get_args(item))
            number = _first_number_type(item)
            if number is not None:
                kwargs["type"] = number
            if option.metavar:
                kwargs["metavar"] = option.metavar
            elif "choices" not in kwargs:
                kwargs["metavar"] = _metavar(item)
        parser.add_argument(flag_of(f), **kwargs)
        added.append(f.name)
    return added


def given(args: argparse.Namespace, cls: type[Settings]) -> dict[str, Any]:
    """The values of ``cls``'s fields in the parsed ``args`` (raw; the class coerces them)."""
    return {name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)}


def _without_none(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return hint


def _first_number_type(hint):
    """``int``/``float`` when a flag of type ``hint`` reads a number (the first of a union), else ``None``."""
    if hint in (int, float):
        return hint
    if typing.get_origin(hint) is Literal and all(type(a) is int for a in typing.get_args(hint)):
        return int
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        first = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return first if first in (int, float) else None
    return None


def _metavar(hint) -> str:
    if hint is int:
        return "N"
    if hint is float:
        return "X"
    return "NAME"


def _default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def to_arguments(settings: Settings, *, base: Settings | None = None, skip: Iterable[str] = (),
                 always: Iterable[str] = ()) -> list[str]:
    """Command-line arguments that reproduce ``settings``: the fields that differ from ``base``
    (all of them without one), and those named in ``always``."""
    arguments: list[str] = []
    skip, always = set(skip), set(always)
    for f in fields(settings):
        if f.name in skip or not option_of(f).cli:
            continue
        value = getattr(settings, f.name)
        if base is not None and getattr(base, f.name) == value and f.name not in always:
            continue
        if value is None:
            continue
        flag = flag_of(f)
        if isinstance(value, bool):
            arguments.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            arguments += [flag, *map(str, value)]
        elif isinstance(value, str) and value.startswith("-"):
            arguments.append(f"{flag}={value}")  # argparse would read a leading '-' as an option
        else:
            arguments += [flag, str(value)]
    return arguments


# -- KEY=VALUE ----------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A value as TOML reads it (``true``, ``0.1``, ``[10, 20]``, ``"B"``), else the plain string (``cosine``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


# The example a malformed pair's error shows, by the flag it was given to: a key that flag takes.
KEY_VALUE_EXAMPLES = {"--model-option": "shortcut=B", "--data-option": "num_train=256", "--set": "lr=0.2"}


def parse_key_values(pairs: Iterable[str] | None, flag: str, *, tables: Iterable[str] = (),
                     example: str | None = None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values by :func:`parse_value`).

    Dotted keys ``TABLE.KEY=VALUE`` fill a nested dict for the names in ``tables`` (e.g.
    ``model_options.shortcut=B``). ConfigError naming ``flag`` for a pair without ``=``, with
    ``flag example`` as the way to write it (by default :data:`KEY_VALUE_EXAMPLES`' for ``flag``).
    """
    example = example or KEY_VALUE_EXAMPLES.get(flag, "name=value")
    out: dict[str, Any] = {}
    allowed_tables = set(tables)
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} {example}")
        value = parse_value(text)
        if "." in key and allowed_tables:
            table, sub = key.split(".", 1)
            if table not in allowed_tables:
                raise ConfigError(f"{flag} {pair!r}: only {', '.join(sorted(allowed_tables))} take a dotted key "
                                  "(TABLE.NAME=VALUE)")
            out.setdefault(table, {})[sub] = value
        else:
            out[key] = value
    return out


def key_value_arguments(values: Mapping[str, Any] | None, flag: str = "--set") -> list[str]:
    """``flag KEY=VALUE`` arguments that :func:`parse_key_values` reads back as ``values``.

    Nested mappings become ``KEY.SUBKEY=VALUE``; booleans and lists are written in TOML spelling.
    """
    arguments: list[str] = []
    for key, value in (values or {}).items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                arguments += [flag, f"{key}.{sub_key}={_toml_text(sub_value)}"]
        else:
            arguments += [flag, f"{key}={_toml_text(value)}"]
    return arguments


def _toml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_toml_text(v) for v in value) + "]"
    return str(value)


__all__ = [
    "Option", "Settings", "add_arguments", "coerce", "given", "key_value_arguments", "parse_key_values",
    "parse_value", "setting", "to_arguments", "unknown_setting",
]
