"""What the timing benchmarks (step_time.py, serving_latency.py) share.

Their common flags (the simulated users, batch size, warm-up calls and seed, with
each script's own defaults), the interleaved timing loop, and the plain-text
result table. Scripts import it as a sibling (``import timing``): they run as
``python benchmarks/<script>.py``, which puts this folder first on the path.
"""

import time
from typing import Callable, Dict, List, Sequence, Tuple

from absl import flags


def define_common_flags(users: int, batch_size: int, warmup: int) -> None:
  """Defines --users, --batch_size, --warmup and --seed with the caller's defaults.

  The script then calls ``flags.adopt_module_key_flags(timing)``, so that its
  ``--help`` lists these flags with its own.
  """
  flags.DEFINE_integer("users", users, "Users to simulate (without data of your own).")
  flags.DEFINE_integer("batch_size", batch_size, "Batch size B of the training steps.")
  flags.DEFINE_integer("warmup", warmup, "Untimed calls per timed function first "
                       "(tracing, caches).")
  flags.DEFINE_integer("seed", 0, "Seed of the simulator, shuffling and models.")


def time_interleaved(calls: Sequence[Tuple[str, Callable[[int], object]]],
                     warmup: int, rounds: int) -> Dict[str, List[float]]:
  """Seconds per call of each ``(name, call)``, calls interleaved across names.

  ``call(i)`` gets the index of the warm-up call or timed round (e.g. to pick a
  batch) and must wait for its result. Each call is first made ``warmup``
  times untimed; then every round calls each once, the order flipped every
  round, so that noise from other processes hits all of them alike.
  """
  for _, call in calls:
    for i in range(warmup):
      call(i)
  seconds = {name: [] for name, _ in calls}
  for r in range(rounds):
    for name, call in calls if r % 2 == 0 else calls[::-1]:
      start = time.perf_counter()
      call(r)
      seconds[name].append(time.perf_counter() - start)
  return seconds


def format_table(rows: Sequence[Tuple[str, ...]]) -> str:
  """Rows of strings as aligned columns: the first left-aligned, the rest right."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)
