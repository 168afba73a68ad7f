"""A replication under test: a table's stream driven through a handler into a target collection.

What the pytest plugin's ``replication`` fixture hands out, usable without pytest too: one
:class:`harness.lane.Lane` on a live table. The stream is read with the core's
:class:`~replicator.poller.streams.StreamReader` and delivered by the event source mapping
emulation (:mod:`harness.esm.mapping`); convergence is judged by :mod:`harness.convergence`
(expected documents built by the replicator's own conversion and the given settings).

"Wait until converged" never waits on a clock: :meth:`Replication.sync` reads the stream until
polls in a row bring nothing (the emulators make a record readable when the write returns) and
drains the mapping, retries included; :meth:`Replication.wait_until_converged` repeats that while
new records keep arriving and returns the diff.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends.base import SourceBackend, Table
from harness.convergence import Diff, read_target
from harness.esm.config import EsmConfig
from harness.esm.report import DriverReport
from harness.lane import HandlerSpec, Lane, scan_items
from replicator.settings import Settings


class Replication:
    """``table``'s stream -> ``handler`` (via the ESM emulation) -> ``collection``: one
    :class:`~harness.lane.Lane` on a live table.

    ``handler``: ``"replicator"`` (the project's core with ``settings``: the default),
    ``"baseline"``, ``"module:function"`` or a callable ``(event, context)`` -- the user's own
    Lambda handler, which writes wherever it writes (give it :attr:`collection`). ``settings``
    also builds the expected documents of :meth:`diff` (transforms, id mapping, numbers). A
    KEYS_ONLY or OLD_IMAGE table's records are completed by consistent reads of the table, as the
    deployed replicator does.
    """

    def __init__(
        self,
        source: SourceBackend,
        table: Table,
        collection: Any,
        *,
        handler: HandlerSpec = "replicator",
        settings: Settings | Mapping[str, Any] | None = None,
        esm: EsmConfig | Mapping[str, Any] | str | Path | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.collection = collection
        self.lane = Lane.for_table(source, table, collection, handler=handler,
                                   settings=settings, esm=esm)
        self.settings = self.lane.settings
        self.esm = self.lane.esm
        self.planner = self.lane.planner

    @property
    def records_read(self) -> int:
        return self.lane.records_read

    # -- the source side -------------------------------------------------------------------------
    @property
    def dynamodb(self) -> Any:
        """A boto3 ``dynamodb`` client bound to the source (write the table with it)."""
        return self.source.dynamodb()

    @property
    def table_name(self) -> str:
        return self.table.spec.name

    def scan(self) -> list[dict[str, Any]]:
        """The table's items now (a strongly consistent, paginated scan)."""
        return scan_items(self.source.dynamodb(), self.table.spec.name)

    # -- driving ---------------------------------------------------------------------------------
    def sync(self) -> int:
        """Deliver every record the stream holds now (retries included); returns how many were
        new. See :meth:`harness.lane.Lane.sync`."""
        return self.lane.sync(self.source.streams())

    def wait_until_converged(self, max_rounds: int = 5) -> Diff:
        """Sync until the stream has nothing new (at most ``max_rounds`` rounds) or the target
        converges; returns the last diff (``diff.converged`` says which)."""
        diff = Diff()
        for _ in range(max(1, max_rounds)):
            fresh = self.sync()
            diff = self.diff()
            if diff.converged or not fresh:
                break
        return diff

    def assert_converged(self, max_rounds: int = 5) -> Diff:
        """:meth:`wait_until_converged`, raising AssertionError with the diff when it did not."""
        diff = self.wait_until_converged(max_rounds)
        if not diff.converged:
            raise AssertionError(describe_diff(diff))
        return diff

    # -- the target side -------------------------------------------------------------------------
    def diff(self) -> Diff:
        """The table now against the collection now."""
        return self.lane.diff(self.scan())

    def documents(self) -> list[dict[str, Any]]:
        """The collection's documents, the sequence field removed."""
        return read_target(self.collection, [self.settings.sequence_field])

    def document(self, document_id: Any) -> dict[str, Any] | None:
        """One document by ``_id`` (sequence field removed), or None."""
        found = [d for d in self.documents() if d.get("_id") == document_id]
        return found[0] if found else None

    @property
    def report(self) -> DriverReport:
        """What the event source mapping did: invocations, retries, discards, on-failure records."""
        return self.lane.report

    def close(self) -> None:
        self.lane.close()


def describe_diff(diff: Diff, limit: int = 10) -> str:
    """A short text of a diff, for an assertion message."""
    lines = [
        f"target did not converge: {diff.expected_count} documents expected, "
        f"{diff.actual_count} found"
    ]
    if diff.missing:
        lines.append(f"missing _ids: {diff.missing[:limit]!r}")
    if diff.extra:
        lines.append(f"extra _ids: {diff.extra[:limit]!r}")
    for changed in diff.changed[:limit]:
        for field in changed.fields[:limit]:
            lines.append(
                f"_id {changed.document_id!r} {field.path}: expected {field.expected!r}, "
                f"found {field.actual!r}"
            )
    return "\n".join(lines)
