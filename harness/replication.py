"""A replication under test: a table's stream driven through a handler into a target collection.

What the pytest plugin's ``replication`` fixture hands out, usable without pytest too. The stream
is read with the core's :class:`~replicator.poller.streams.StreamReader` and delivered by the event source
mapping emulation (:mod:`harness.esm.mapping`); convergence is judged by :mod:`harness.convergence`
(expected documents built by the replicator's own conversion and the given settings).

"Wait until converged" never waits on a clock: :meth:`Replication.sync` reads the stream until
polls in a row bring nothing (the emulators make a record readable when the write returns) and
drains the mapping, retries included; :meth:`Replication.wait_until_converged` repeats that while
new records keep arriving and returns the diff.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.backends.base import SourceBackend, Table
from harness.convergence import Diff, check, read_target
from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from harness.esm.report import DriverReport
from harness.handlers import make_handler
from replicator.expected import planner_for as planner_for  # its home; re-exported
from replicator.settings import Settings

#: A handler as Lambda calls it: ``handler(event, context)``.
LambdaHandler = Callable[[dict[str, Any], Any], Any]
HandlerSpec = str | LambdaHandler


def esm_config(esm: EsmConfig | Mapping[str, Any] | str | Path | None) -> EsmConfig:
    """An :class:`EsmConfig` from itself, from CreateEventSourceMapping names (``BatchSize``...),
    or from a SAM/CloudFormation template's path (see :mod:`harness.esm.template`).

    ``None``: the defaults with ReportBatchItemFailures on, as the README tells users to deploy.
    """
    if esm is None:
        return EsmConfig(report_batch_item_failures=True)
    if isinstance(esm, EsmConfig):
        return esm
    if isinstance(esm, (str, Path)):
        from harness.esm.template import load_esm_config

        return load_esm_config(Path(esm))
    return EsmConfig.from_aws(esm)


def settings_for(table: Table, settings: Settings | Mapping[str, Any] | None) -> Settings:
    """The settings with the table's key schema (a mapping is taken as Settings' field names)."""
    if settings is None:
        settings = Settings()
    elif isinstance(settings, Mapping):
        fields = dict(settings)
        for name in ("transforms", "shard_key", "key_schema"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        settings = Settings(**fields)
    if settings.key_schema is None:
        settings = dataclasses.replace(settings, key_schema=table.spec.key_schema)
    return settings


class Replication:
    """``table``'s stream -> ``handler`` (via the ESM emulation) -> ``collection``.

    ``handler``: ``"replicator"`` (the project's core with ``settings``: the default),
    ``"baseline"``, ``"module:function"`` or a callable ``(event, context)`` -- the user's own
    Lambda handler, which writes wherever it writes (give it :attr:`collection`). ``settings``
    also builds the expected documents of :meth:`diff` (transforms, id mapping, numbers).
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
        self.settings = settings_for(table, settings)
        self.esm = esm_config(esm)
        self.planner = planner_for(self.settings)
        if callable(handler):
            user = handler
            function: Callable[[dict[str, Any]], Any] = lambda event: user(event, None)  # noqa: E731
        else:
            function = make_handler(handler, collection, self.settings)
        self.driver = EventSourceMapping(
            function, self.esm, stream_arn=table.stream_arn,
            region=source.region,
            partition_key=table.spec.partition_key[0],
        )
        self._positions: dict[str, str] = {}
        self._finished: list[str] = []
        self.records_read = 0

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
        from harness.runner import scan_items

        return scan_items(self.source.dynamodb(), self.table.spec.name)

    # -- driving ---------------------------------------------------------------------------------
    def sync(self) -> int:
        """Deliver every record the stream holds now; returns how many were new.

        A fresh reader per call, resumed after the last record read: a reader's iterator may be
        pinned to a table object moto replaces on a failed conditional write (see
        StreamReader._read_shard), and a new iterator from the last sequence number loses nothing.
        """
        from harness.streams import StreamReader, parent_of

        reader = StreamReader(
            self.source.streams(), self.table.stream_arn,
            positions=self._positions, finished=self._finished,
        )
        fresh = reader.drain(idle_polls=2)
        count = 0
        for shard_id, records in fresh.items():
            parent = parent_of(reader, shard_id)
            count += self.driver.feed(shard_id, records, parent_shard_id=parent)
        self._positions.update({k: v for k, v in reader.positions().items() if v is not None})
        self._finished = reader.exhausted()
        self.driver.drain()
        self.records_read += count
        return count

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
        return check(self.scan(), self.collection, self.planner)

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
        return self.driver.report

    def close(self) -> None:
        self.driver.close()


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
