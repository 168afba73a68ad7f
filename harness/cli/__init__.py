"""``harness``: run scenarios, replay captured streams, list what exists.

``app`` holds the Typer app and what commands share; the commands are in ``captures`` (replay,
record, shrink), ``kit`` (generate, dynamodb-local) and ``scenarios`` (run, chaos, list),
registered on import in that order (the order ``harness --help`` lists them).
"""

from __future__ import annotations

import logging

from harness.cli import captures, kit, scenarios  # noqa: F401  (registers the commands)
from harness.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="harness")
