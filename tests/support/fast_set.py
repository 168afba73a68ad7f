"""The fast set (``pytest -m "not slow ..."``, ``nox -s fast``: what runs while editing) against
the whole suite (CI, ``nox -s tests``): what a test keeps in the first and gets in full in the
second.

- ``fast_first(values, n=1)``: parametrize values of which the first ``n`` run in the fast set
  and the others carry ``@pytest.mark.slow`` (more cases of the same kind: each costs a
  subprocess or a replay of its own, and the first already exercises the path).
- ``examples(n)``: a Hypothesis ``max_examples`` of ``n`` in the whole suite and ``n //
  FAST_DIVISOR`` (at least ``FAST_FLOOR``, at most ``n``) in the fast set. Hypothesis has no
  public way to scale a count a test pins, hence this helper. The fast set draws fewer examples
  of the same strategies; the whole suite still draws them all.

A run is the fast set when its ``-m`` expression deselects slow tests (holds ``not slow``); this
plugin (loaded by tests/conftest.py) reads it before the test modules are imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

#: the class pytest.param makes (public as pytest.ParameterSet only in recent pytests)
_PARAM = type(pytest.param(None))
FAST_DIVISOR = 5
FAST_FLOOR = 20

_fast_set = False


def pytest_configure(config: pytest.Config) -> None:
    global _fast_set
    _fast_set = "not slow" in (config.getoption("markexpr", "") or "")


def in_fast_set() -> bool:
    """True when this run deselects slow tests (the fast set)."""
    return _fast_set


def examples(full: int) -> int:
    """``full`` in the whole suite; ``full // FAST_DIVISOR`` (>= FAST_FLOOR, <= full) in the fast
    set."""
    return min(full, max(FAST_FLOOR, full // FAST_DIVISOR)) if _fast_set else full


def fast_first(values: Iterable[Any], n: int = 1) -> list[Any]:
    """``values`` for ``pytest.mark.parametrize``: the first ``n`` as they are, the others marked
    slow. A tuple is one case's values for several argnames (as parametrize takes them); a
    ``pytest.param`` keeps its id and marks; parametrize's ``ids=`` still applies."""
    out: list[Any] = []
    for index, value in enumerate(values):
        if index < n:
            out.append(value)
        elif isinstance(value, _PARAM):
            out.append(pytest.param(*value.values, id=value.id,
                                    marks=[*value.marks, pytest.mark.slow]))
        elif isinstance(value, tuple):
            out.append(pytest.param(*value, marks=pytest.mark.slow))
        else:
            out.append(pytest.param(value, marks=pytest.mark.slow))
    return out
