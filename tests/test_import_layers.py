"""Import direction between layers, checked by parsing (not importing) every module."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("data_pipeline", "egin_tf", "experiments", "benchmarks")
# The packages of egin_tf from the bottom up: layers < eges < models < serve <
# train < cli (train's stream trainer exports through serve).
_UPPER = ("egin_tf.models", "egin_tf.serve", "egin_tf.train", "egin_tf.cli")
# (rule, modules it governs, imports they may not make, modules exempt from it).
RULES = (
    ("data_pipeline is the bottom layer", ("data_pipeline",),
     ("egin_tf", "experiments", "benchmarks"), ()),
    ("egin_tf.layers sits below eges, models, serve, train and cli",
     ("egin_tf.layers",), ("egin_tf.eges",) + _UPPER, ()),
    # EGES's stage 1 (and the frozen table reading its vectors) sits between
    # layers and models: egin_tf.models.eges imports it, never the reverse.
    ("egin_tf.eges sits below models, serve, train and cli",
     ("egin_tf.eges",), _UPPER, ()),
    ("egin_tf.models sits below serve, train and cli", ("egin_tf.models",),
     _UPPER[1:], ()),
    ("egin_tf.serve sits below train and cli", ("egin_tf.serve",), _UPPER[2:], ()),
    ("experiments and benchmarks sit on top", ("egin_tf", "data_pipeline"),
     ("experiments", "benchmarks"), ()),
    ("only egin_tf.cli imports egin_tf.cli", ("egin_tf",), ("egin_tf.cli",),
     ("egin_tf.cli",)),
)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _imports(path: pathlib.Path):
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node.module
      yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _within(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + ".")


def _modules():
  return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_finds_modules():
  assert len(_modules()) > 20, f"only {len(_modules())} modules under {PACKAGES}"


@pytest.mark.parametrize("rule,owners,forbidden,exempt", RULES)
def test_import_direction(rule, owners, forbidden, exempt):
  violations = []
  for path in _modules():
    module = _module_name(path)
    if not any(_within(module, o) for o in owners) or any(
        _within(module, e) for e in exempt):
      continue
    for name in _imports(path):
      if any(_within(name, f) for f in forbidden):
        violations.append(f"{module} imports {name}: {rule}")
  assert not violations, "\n".join(sorted(set(violations)))
