"""The one mechanism every config file goes through: a pydantic model, read once, errors in one line.

Each ``configs/*.yaml`` file has a ``ConfigModel`` (strict types, unknown keys forbidden, frozen so a
cached object cannot be changed behind another caller's back). ``load_model`` reads and validates a
file, caching the result until the file changes on disk, and turns pydantic's ``ValidationError``
into a ``ConfigError`` naming the file and the dotted key, with a "did you mean" for a misspelling.
"""

from __future__ import annotations

import difflib
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from finai_models.errors import ConfigError


class ConfigModel(BaseModel):
    """Base of every config file model: strict (no "5" -> 5), no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "must be a number")
    return value


# An int or a float, kept as written: a YAML ``1`` stays ``1``, so fingerprints of config blocks do not move.
Number = Annotated[int | float, PlainValidator(_number)]

M = TypeVar("M", bound=ConfigModel)

_TYPE_NAMES = {"int_type": "int", "int_parsing": "int", "string_type": "str", "bool_type": "bool",
               "bool_parsing": "bool", "number_type": "a number", "float_type": "a number"}
_CONTAINERS = {"list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
               "model_attributes_type": "a mapping"}


def read_yaml(path: Path) -> Any:
    """The parsed file; a missing file or bad YAML is a one-line ``ConfigError``."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open() as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_model(path: Path, model: type[M]) -> M:
    """``path`` validated as ``model``; re-read only when the file's size or modification time changes."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    return _load_model(path, model, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _load_model(path: Path, model: type[M], mtime_ns: int, size: int) -> M:
    data = read_yaml(path)
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise config_error(exc, path, model) from None


def config_error(exc: ValidationError, file: Path | str, model: type[BaseModel]) -> ConfigError:
    """The first problem of ``exc`` as one line; an unknown key wins, since it usually explains a missing one."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    return ConfigError(f"{file}: {_describe(err, model)}")


def _describe(err: ErrorDetails, model: type[BaseModel]) -> str:
    loc, kind, value = err["loc"], err["type"], err["input"]
    where = _dotted(loc) or "<top level>"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
        hint = f" (did you mean '{_dotted((*loc[:-1], close[0]))}'?)" if close else ""
        return f"unknown key '{where}'{hint}"
    if kind == "missing":
        return f"missing key '{where}'"
    if kind in _TYPE_NAMES:
        return f"'{where}' must be {_TYPE_NAMES[kind]}, got {value!r}"
    if kind in _CONTAINERS:
        return f"'{where}' must be {_CONTAINERS[kind]}, got {type(value).__name__}"
    return f"'{where}' {err['msg']}, got {value!r}"


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model allows at ``loc``: what a misspelt key there is compared with."""
    node: Any = model
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[str(part)].annotation
        else:                                   # list[X] or dict[str, X]: step into X
            args = typing.get_args(node)
            node = args[-1] if args else Any
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or name for name, f in node.model_fields.items()]
    return []


def _unwrap(node: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        return args[0] if len(args) == 1 else node
    return node
