"""Loads the shared test support (tests/support/) by module name: its fixtures, the check
that fails an unmarked test whose call takes more CPU time than the fast set allows, and what the
fast set keeps of a parametrized or Hypothesis test (support.fast_set)."""

from __future__ import annotations

pytest_plugins = ["support.fixtures", "support.cpu_budget", "support.fast_set"]
