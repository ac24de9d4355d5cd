"""A small declarative validator for the YAML configs.

A spec is a type (``int``, ``float``, ``str``, ``bool``), a ``list`` spec written ``[item_spec]``,
a dict of key -> spec (fixed keys; ``Optional`` marks optional ones), or ``MapOf(spec)`` for
mappings with free keys. Errors name the file and the dotted key, and suggest the nearest
valid key for a misspelling, so one line is enough to fix the file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from finai_models.errors import ConfigError


@dataclass(frozen=True)
class Optional:
    spec: Any


@dataclass(frozen=True)
class MapOf:
    spec: Any


def _type_name(value: Any) -> str:
    return type(value).__name__


def validate(value: Any, spec: Any, file: str, path: str = "") -> None:
    """Raise ConfigError for the first key that does not match ``spec``."""
    where = path or "<top level>"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{where}' must be a mapping, got {_type_name(value)}")
        for key in value:
            if key not in spec:
                close = difflib.get_close_matches(str(key), [str(k) for k in spec], n=1)
                hint = f" (did you mean '{_join(path, close[0])}'?)" if close else ""
                raise ConfigError(f"{file}: unknown key '{_join(path, key)}'{hint}")
        for key, sub in spec.items():
            if key not in value:
                if isinstance(sub, Optional):
                    continue
                raise ConfigError(f"{file}: missing key '{_join(path, key)}'")
            validate(value[key], sub.spec if isinstance(sub, Optional) else sub, file, _join(path, key))
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{where}' must be a mapping, got {_type_name(value)}")
        for key, item in value.items():
            validate(item, spec.spec, file, _join(path, key))
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ConfigError(f"{file}: '{where}' must be a list, got {_type_name(value)}")
        for i, item in enumerate(value):
            validate(item, spec[0], file, f"{where}[{i}]")
    elif spec is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{file}: '{where}' must be a number, got {value!r}")
    elif spec is Any:
        return
    elif not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        raise ConfigError(f"{file}: '{where}' must be {spec.__name__}, got {value!r}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
