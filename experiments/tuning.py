"""The tuning budget every model of a table gets: the rate and one architecture knob.

A fair table gives each model the same number of trials: every learning rate of
``--lrs`` crossed with two values of ONE architecture knob of the model (its
`ARCH_KNOBS` entry; the model's default is one of the two), each trained with the
first seed and scored on the validation split cut from train by time. The best
trial on validation is then run with every seed and scored on test.

A model without a knob here (or a table run with ``--notune_arch``) sweeps the
rate alone. A trial at the model's default knob value (or without a knob) runs
in the folder ``lr<lr>``, so tables with and without the knob share those runs.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

# model -> (config field, its two values); the first value is the default.
ARCH_KNOBS: Dict[str, Tuple[str, Tuple[Any, Any]]] = {
    "dnn": ("hidden_units", ((200, 80), (400, 160))),
    "dnn_cross": ("hidden_units", ((200, 80), (400, 160))),
    "din": ("attention_units", ((36,), (80, 40))),
    "bst": ("num_heads", (2, 1)),
    "eges": ("top_k", (10, 5)),
    "egin": ("top_k", (10, 5)),
}


@dataclasses.dataclass(frozen=True)
class Trial:
  """One point of a model's tuning grid: a rate and maybe one knob's value."""
  lr: float
  knob: Optional[str] = None
  value: Any = None
  is_default: bool = True  # the value is the model's default

  def kwargs(self) -> Dict[str, Any]:
    """The model constructor arguments this trial sets."""
    return {} if self.knob is None else {self.knob: self.value}

  def tag(self) -> str:
    """The trial's part of a run folder name: ``lr0.001`` or
    ``lr0.001-top_k5`` (tuples joined by ``_``). A knob at the model's default
    is left out, so the run is the same folder with or without ``tune_arch``."""
    if self.knob is None or self.is_default:
      return f"lr{self.lr:g}"
    return f"lr{self.lr:g}-{self.knob}{_value_text(self.value, '_')}"

  def label(self) -> str:
    """For tables: ``lr 0.001`` or ``lr 0.001, top_k 5``."""
    if self.knob is None:
      return f"lr {self.lr:g}"
    return f"lr {self.lr:g}, {self.knob} {_value_text(self.value, ',')}"


def trials(model: str, lrs: Sequence[float], tune_arch: bool = True) -> List[Trial]:
  """The grid of ``model``: every rate, crossed with its knob's two values when
  ``tune_arch`` and the model has a knob (in `ARCH_KNOBS` order)."""
  if not tune_arch or model not in ARCH_KNOBS:
    return [Trial(lr) for lr in lrs]
  knob, values = ARCH_KNOBS[model]
  return [Trial(lr, knob, value, value == values[0])
          for value in values for lr in lrs]


def _value_text(value: Any, separator: str) -> str:
  if isinstance(value, (tuple, list)):
    return separator.join(str(v) for v in value)
  return str(value)
