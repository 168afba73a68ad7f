"""Loads the shared test support (tests/support/) by module name: its fixtures, and the check
that fails an unmarked test whose call takes more CPU time than the fast set allows."""

from __future__ import annotations

pytest_plugins = ["support.fixtures", "support.cpu_budget"]
