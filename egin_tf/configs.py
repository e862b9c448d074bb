"""Typed, frozen configs: declared fields with ranges, validated on construction.

A config is a frozen dataclass deriving from `Config` whose fields are made with
`param(default, help, ...)`. Construction checks every field's type and range
and raises `ConfigError` naming the config, the field, the value and what is
allowed; tuples given as lists are normalized, ints given for floats widened.
`to_dict` / `from_dict` round-trip through JSON (``config.json``, ``--config``
files), and the CLI makes one flag per field from the same declarations, so a
field's default, range and help live in exactly one place.
"""

import dataclasses
import functools
import numbers
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple


class ConfigError(ValueError):
  """A config field holds a value it does not allow (or is unknown)."""

  def __init__(self, owner: str, field: str, value: Any, allowed: str):
    self.owner, self.field, self.value, self.allowed = owner, field, value, allowed
    super().__init__(f"{owner}.{field}={value!r}: {allowed}")


def param(default: Any, help: str, *, min: Optional[float] = None,  # pylint: disable=redefined-builtin
          max: Optional[float] = None, above: Optional[float] = None,
          below: Optional[float] = None, choices: Optional[Sequence[Any]] = None,
          negated_flag: Optional[str] = None) -> Any:
  """A config field: ``min``/``max`` inclusive, ``above``/``below`` exclusive bounds;
  ``choices`` the allowed values (of a tuple's items); ``negated_flag`` the
  name of the command-line switch that sets a True-by-default bool to False."""
  metadata = {"help": help, "min": min, "max": max, "above": above,
              "below": below,
              "choices": tuple(choices) if choices is not None else None,
              "negated_flag": negated_flag}
  if isinstance(default, dict):
    return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
  if isinstance(default, (list, tuple)):
    default = tuple(default)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
  """What a field holds: ``kind`` int|float|bool|str, ``is_tuple``, ``optional``."""
  name: str
  kind: type
  is_tuple: bool
  optional: bool
  default: Any
  metadata: Mapping[str, Any]

  @property
  def help(self) -> str:
    return self.metadata.get("help", "")


@dataclasses.dataclass(frozen=True)
class Config:
  """Base of every typed config; subclasses add fields and may override `check`."""

  def __post_init__(self):
    for spec in field_specs(type(self)):
      object.__setattr__(self, spec.name,
                         _checked(type(self).__name__, spec, getattr(self, spec.name)))
    self.check()

  def check(self) -> None:
    """Checks that involve several fields; raise `ConfigError` (via `fail`)."""

  def fail(self, field: str, allowed: str) -> None:
    raise ConfigError(type(self).__name__, field, getattr(self, field), allowed)

  def to_dict(self) -> Dict[str, Any]:
    """JSON-ready: tuples become lists."""
    return {spec.name: _jsonable(getattr(self, spec.name))
            for spec in field_specs(type(self))}

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]):
    """The config of ``values``; an unknown key is a `ConfigError`."""
    known = {spec.name for spec in field_specs(cls)}
    for key in values:
      if key not in known:
        raise ConfigError(cls.__name__, key, values[key],
                          f"unknown field; the fields are {', '.join(sorted(known))}")
    return cls(**values)

  @classmethod
  def split_kwargs(cls, kwargs: Mapping[str, Any]
                   ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(this config's fields, the rest) of a constructor's keyword arguments."""
    known = {spec.name for spec in field_specs(cls)}
    mine = {k: v for k, v in kwargs.items() if k in known}
    return mine, {k: v for k, v in kwargs.items() if k not in known}

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
  if isinstance(value, tuple):
    return list(value)
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  return value


@functools.lru_cache(maxsize=None)
def field_specs(cls: type) -> Tuple[FieldSpec, ...]:
  """The declared fields of a config class, in declaration order."""
  hints = typing.get_type_hints(cls)
  specs = []
  for f in dataclasses.fields(cls):
    kind, is_tuple, optional = _unpack_type(hints[f.name])
    default = (f.default_factory() if f.default is dataclasses.MISSING
               else f.default)
    specs.append(FieldSpec(f.name, kind, is_tuple, optional, default,
                           dict(f.metadata)))
  return tuple(specs)


def _unpack_type(hint) -> Tuple[type, bool, bool]:
  optional = False
  args = typing.get_args(hint)
  if typing.get_origin(hint) is typing.Union and type(None) in args:
    optional = True
    hint = next(a for a in args if a is not type(None))
  if typing.get_origin(hint) in (tuple, Tuple):
    return typing.get_args(hint)[0], True, optional
  if typing.get_origin(hint) in (dict, Dict):
    return dict, False, optional
  return hint, False, optional


def _checked(owner: str, spec: FieldSpec, value: Any) -> Any:
  """``value`` normalized to the field's type, or a `ConfigError`."""
  if value is None:
    if spec.optional:
      return None
    raise ConfigError(owner, spec.name, value, "must be set")
  if not spec.is_tuple:
    return _checked_scalar(owner, spec, value, spec.name)
  if isinstance(value, str) or not isinstance(value, (list, tuple)):
    raise ConfigError(owner, spec.name, value,
                      f"must be a list of {spec.kind.__name__}")
  return tuple(_checked_scalar(owner, spec, v, spec.name) for v in value)


def _checked_scalar(owner: str, spec: FieldSpec, value: Any, name: str) -> Any:
  value = _typed(owner, spec, value, name)
  meta = spec.metadata
  bounds = ((meta.get("min"), lambda v, b: v >= b, ">="),
            (meta.get("max"), lambda v, b: v <= b, "<="),
            (meta.get("above"), lambda v, b: v > b, ">"),
            (meta.get("below"), lambda v, b: v < b, "<"))
  for bound, holds, word in bounds:
    if bound is not None and not holds(value, bound):
      raise ConfigError(owner, name, value, f"must be {word} {bound}")
  choices = meta.get("choices")
  if choices is not None and value not in choices:
    raise ConfigError(owner, name, value,
                      f"must be one of {', '.join(map(str, choices))}")
  return value


def _typed(owner: str, spec: FieldSpec, value: Any, name: str) -> Any:
  kind = spec.kind
  if isinstance(value, bool) != (kind is bool):
    raise ConfigError(owner, name, value, f"must be {_kind_name(kind)}")
  if kind is float and isinstance(value, numbers.Real):
    return float(value)
  if kind is int and isinstance(value, numbers.Integral):
    return int(value)
  if kind is int and isinstance(value, float) and value.is_integer():
    return int(value)
  if kind in (bool, str, dict) and isinstance(value, kind):
    return value
  raise ConfigError(owner, name, value, f"must be {_kind_name(kind)}")


def _kind_name(kind: type) -> str:
  return {int: "an integer", float: "a number", bool: "true or false",
          str: "a string", dict: "a mapping"}.get(kind, kind.__name__)
