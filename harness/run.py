"""One entry for every scenario: :func:`run_any` runs a stream scenario (harness.runner) or a
migration scenario (harness.migration) and returns the same report, a RunResult.

A module of its own because harness.migration builds on harness.runner (its RunResult, its
scan): the dispatch cannot live in runner.py without an import circle.
"""

from __future__ import annotations

from typing import Any

from harness.migration import run_migration
from harness.runner import Progress, RunResult, run_scenario
from harness.scenario import Scenario

__all__ = ["run_any"]


def run_any(
    scenario: Scenario,
    *,
    source: str | None = None,
    target: str | None = None,
    target_uri: str | None = None,
    handlers: list[str] | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    source_options: dict[str, Any] | None = None,
) -> RunResult:
    """Run ``scenario`` (either kind); the arguments are :func:`harness.runner.run_scenario`'s.

    Raises ValueError for ``handlers`` or ``source_options`` given to a migration scenario (it
    runs the replicator's own copy and poller, on a source it starts itself).
    """
    if not scenario.migration:
        return run_scenario(scenario, source=source, target=target, target_uri=target_uri,
                            handlers=handlers, seed=seed, progress=progress,
                            source_options=source_options)
    if handlers and handlers != ["replicator"]:
        raise ValueError(f"{scenario.name} is a migration scenario: it runs the replicator's "
                         f"copy and poller, not a handler ({', '.join(handlers)})")
    if source_options:
        raise ValueError(f"{scenario.name} is a migration scenario: source options do not apply")
    return run_migration(scenario, source=source, target=target, target_uri=target_uri, seed=seed)
