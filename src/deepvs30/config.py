"""params.yaml is the single source of configuration.

It is read once (by the CLI) and each module receives its own typed section:
``section(params, "train", TrainParams)`` builds the dataclass, refusing missing,
unknown or ill-typed keys with a message that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deepvs30.errors import ConfigError

DEFAULT_PARAMS_PATH = Path("params.yaml")
# a safe loader; libyaml's where PyYAML has it: params.yaml in 11 ms instead of 76 ms, the
# same values (every command reads it before doing anything)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

T = TypeVar("T")


@dataclass(frozen=True)
class DataParams:
    """The ``data:`` section: where the canonical dataset is (the DVC-tracked data/)."""

    path: str = "data"


def data_path(params: dict[str, Any]) -> str:
    """data.path: the one way every stage finds the dataset."""
    return section(params, "data", DataParams).path


def load_params(path: str | Path = DEFAULT_PARAMS_PATH) -> dict[str, Any]:
    """Read params.yaml into a dict; the path is remembered for error messages."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        params = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    params["__path__"] = str(path)
    return params


def section(params: dict[str, Any], name: str, cls: type[T]) -> T:
    """Build the dataclass ``cls`` from the section ``name`` of ``params``."""
    where = params.get("__path__", "params.yaml")
    if name not in params:
        raise ConfigError(f"{where}: missing section '{name}'")
    return from_dict(params[name], cls, f"{where}: {name}")


def from_dict(values: Any, cls: type[T], where: str) -> T:
    """Recursively build dataclass ``cls`` from a mapping, checking keys and types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for key, field in fields.items():
        if key not in values:
            no_default = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if no_default:
                raise ConfigError(f"{where}: missing key '{key}'")
            continue
        kwargs[key] = _coerce(values[key], hints[key], f"{where}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(value, hint, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
