"""Command-line flags made from config fields, mapped onto a run in one place.

`define_flags` declares one absl flag per `Config` field (a name shared by
several configs, such as ``--max_positions``, is one flag; a True-by-default
ablation switch is its ``negated_flag``, such as ``--no_graph``). Every flag
defaults to unset, so only what the user typed overrides the config file and
the defaults: `overrides` turns the flags given on the command line into the
sections of a `egin_tf.train.run_config` layer, refusing a flag that applies to no
config of the run (``--top_k`` with ``--model dnn``, ``--follow`` without
``--stream``).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from absl import flags

from egin_tf.cli import common
from egin_tf.configs import FieldSpec, field_specs

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Target:
  """A field a flag sets: in ``section``, of configs named ``owners``."""
  section: str
  spec: FieldSpec
  owners: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
  name: str
  targets: Tuple[Target, ...]
  negated: bool = False

  def targets_in(self, active: Mapping[str, str]) -> List[Target]:
    """The targets in the run's active configs (section -> owner name)."""
    return [t for t in self.targets if active.get(t.section) in t.owners]


def collect(sections: Mapping[str, Mapping[str, type]],
            exclude: Sequence[str] = ()) -> Dict[str, ConfigFlag]:
  """The flags of ``sections`` (section -> {owner name: config class})."""
  by_name: Dict[Tuple[str, bool], Dict[tuple, Target]] = {}
  for section, owners in sections.items():
    for owner, config_cls in owners.items():
      for spec in field_specs(config_cls):
        if spec.name in exclude or spec.kind is dict:
          continue
        negated = spec.metadata.get("negated_flag")
        key = (negated or spec.name, bool(negated))
        targets = by_name.setdefault(key, {})
        # Owners share a target when the field is the same, default included.
        same = (section, spec.name, spec.kind, spec.is_tuple, repr(spec.default))
        old = targets.get(same)
        targets[same] = Target(section, spec, (old.owners if old else ()) + (owner,))
  return {name: ConfigFlag(name, tuple(targets.values()), negated)
          for (name, negated), targets in by_name.items()}


def define_flags(config_flags: Mapping[str, ConfigFlag], module_name: str) -> None:
  """Declares each flag (unset by default) for the command ``module_name``."""
  for flag in config_flags.values():
    definer, help_text = _definer(flag), _help(flag)
    definer(flag.name, None, help_text, module_name=module_name)


def _definer(flag: ConfigFlag):
  specs = [t.spec for t in flag.targets]
  kinds = {(s.kind, s.is_tuple) for s in specs}
  if flag.negated or kinds == {(bool, False)}:
    return flags.DEFINE_bool
  if len(kinds) == 1 and not specs[0].is_tuple:
    return {int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(
        specs[0].kind, flags.DEFINE_string)
  return flags.DEFINE_string  # comma lists, or a name typed differently per model


def _help(flag: ConfigFlag) -> str:
  first = flag.targets[0].spec
  text = f"Turns off: {first.help}" if flag.negated else first.help
  defaults = {}
  for target in flag.targets:
    default = target.spec.default
    if flag.negated:
      default = not default
    shown = (",".join(map(str, default)) if isinstance(default, tuple)
             else "unset" if default is None else str(default))
    defaults.setdefault(shown, []).extend(target.owners)
  if len(defaults) == 1:
    only_models = all(t.section == "model" for t in flag.targets)
    scope = f"{', '.join(next(iter(defaults.values())))}; " if only_models else ""
    return f"{text} [{scope}default {next(iter(defaults))}]"
  parts = "; ".join(f"{value} ({', '.join(owners)})" for value, owners in defaults.items())
  return f"{text} [default {parts}]"


def overrides(config_flags: Mapping[str, ConfigFlag], active: Mapping[str, str],
              why_not: Mapping[str, str]) -> Dict[str, Dict[str, Any]]:
  """The given flags as sections {section: {field: value}}.

  ``active``: section -> the owner name in use (a section missing is off);
  ``why_not``: section -> the sentence that refuses a flag of that section.
  """
  out: Dict[str, Dict[str, Any]] = {}
  for flag in config_flags.values():
    if not FLAGS[flag.name].present:
      continue
    targets = flag.targets_in(active)
    if not targets:
      section = flag.targets[0].section
      scope = f" (it applies to {_owners(flag)})" if section == "model" else ""
      raise common.FlagError(
          f"--{flag.name} {why_not.get(section, 'does not apply')}{scope}")
    for target in targets:
      out.setdefault(target.section, {})[target.spec.name] = _parsed(flag, target)
  return out


def _owners(flag: ConfigFlag) -> str:
  return ", ".join(dict.fromkeys(o for t in flag.targets for o in t.owners))


def _parsed(flag: ConfigFlag, target: Target) -> Any:
  value = FLAGS[flag.name].value
  if flag.negated:
    return not value
  spec = target.spec
  if not isinstance(value, str) or spec.kind is str and not spec.is_tuple:
    return value
  items = [v.strip() for v in value.split(",")] if spec.is_tuple else [value]
  try:
    parsed = [spec.kind(v) if spec.kind is not str else v for v in items]
  except ValueError:
    raise common.FlagError(f"--{flag.name}={value}: must be a comma-separated list "
                           f"of {spec.kind.__name__}s") from None
  return parsed if spec.is_tuple else parsed[0]


def flag_of(config_flags: Mapping[str, ConfigFlag], section: str, field: str) -> str:
  """The flag that sets ``section.field`` (empty when none does)."""
  for flag in config_flags.values():
    if any(t.section == section and t.spec.name == field for t in flag.targets):
      return flag.name
  return ""
