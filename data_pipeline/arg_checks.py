"""The one check of an integer argument, shared by converters, layers and EGES.

It lives at the bottom layer so that data_pipeline and egin_tf can both use it.
"""

from typing import Any


def check_int(name: str, value: Any, minimum: int = 1, owner: str = "") -> int:
  """Returns ``value`` if it is an int >= ``minimum``; raises ValueError otherwise.

  ``bool`` is refused although it is an ``int`` subclass: ``True`` as a window
  size is a mistake, not a 1. ``owner`` (a class or config name) prefixes the
  message so the user knows which constructor refused.
  """
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    prefix = f"{owner}: " if owner else ""
    raise ValueError(f"{prefix}{name} must be an int >= {minimum}, got {value!r}")
  return value
