"""data_pipeline.arg_checks.check_int: the shared integer-argument check."""

import pytest

from data_pipeline.arg_checks import check_int


@pytest.mark.parametrize("value, minimum", [(1, 1), (7, 1), (0, 0), (2, 2)])
def test_accepts_ints_at_or_above_the_minimum(value, minimum):
  assert check_int("k", value, minimum) == value


@pytest.mark.parametrize("value", [0, -3, 2.0, "3", True, None])
def test_refuses_with_the_name_the_minimum_and_the_value(value):
  with pytest.raises(ValueError) as err:
    check_int("window", value, minimum=1, owner="QueryItemGraph")
  assert str(err.value) == f"QueryItemGraph: window must be an int >= 1, got {value!r}"


def test_without_an_owner_the_message_starts_with_the_name():
  with pytest.raises(ValueError, match=r"^seed must be an int >= 0, got -1$"):
    check_int("seed", -1, minimum=0)
