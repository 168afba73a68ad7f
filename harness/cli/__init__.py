"""``harness``: run scenarios, replay captured streams, list what exists, start the servers.

``app`` holds the Typer app and what commands share; the commands are in ``captures`` (replay,
record, shrink), ``kit`` (generate, dynamodb-local), ``scenarios`` (run, chaos, list) and ``up``
(the embedded servers), registered on import in that order (the order ``harness --help`` lists
them).

In an install without the dev kit's extra (``pip install ddb-mongo-replicator``: no typer, rich,
moto...) the package still imports, and ``main`` says in one line which extra to install instead
of a traceback.
"""

from __future__ import annotations

import logging
import sys

#: What installs the dev kit's libraries (typer, rich, moto, mongomock, mongoeco, ...).
INSTALL_EXTRA = "pip install 'ddb-mongo-replicator[harness]'"
#: Modules of this project: a missing one is a broken install or a bug, not a missing extra.
OWN_PACKAGES = ("harness", "replicator")

_missing: ModuleNotFoundError | None = None
try:
    from harness.cli import captures, kit, scenarios, up  # noqa: F401  (registers the commands)
    from harness.cli.app import app
except ModuleNotFoundError as error:
    if (error.name or "").split(".")[0] in OWN_PACKAGES:
        raise
    _missing = error

__all__ = ["INSTALL_EXTRA", "app", "main", "missing_extra_message"]


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """The one line for a library of the dev kit's extra that is not installed; None for a module
    of this project (that is a bug to show in full)."""
    name = error.name or ""
    if not name or name.split(".")[0] in OWN_PACKAGES:
        return None
    return (f"harness: the dev kit's libraries are not installed (no module named {name!r}): "
            f"{INSTALL_EXTRA}")


def main() -> None:
    """The ``harness`` console script. Exit status 2, with one line on standard error, when the
    dev kit's extra is missing (at start, or when a command imports an emulator's library)."""
    if _missing is not None:
        sys.stderr.write(f"{missing_extra_message(_missing)}\n")
        raise SystemExit(2)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(prog_name="harness")
    except ModuleNotFoundError as error:
        message = missing_extra_message(error)
        if message is None:
            raise
        sys.stderr.write(f"{message}\n")
        raise SystemExit(2) from None
