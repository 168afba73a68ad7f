"""The one table a Replicator replicates: pinned from the first record that names one.

Records of another table are quarantined, never merged into the collection: two tables in one
collection would overwrite each other's documents by key. Records without ``eventSourceARN`` (as
GetRecords returns them) always pass.
"""

from __future__ import annotations

from typing import Any

from replicator.errors import UnsupportedRecordError
from replicator.events import BadRecord, Change, table_arn_of
from replicator.item_records import COPY_SEQUENCE


class SourceTable:
    """``Settings.source_table`` (a name or table ARN; None: the first table seen) and the pin."""

    def __init__(self, wanted: str | None, kind: str = "auto") -> None:
        self.wanted = wanted
        #: "dynamodb" or "kinesis" (Settings.source), or None until the first record pins it
        self.kind: str | None = None if kind == "auto" else kind
        #: the pinned table's ARN (before "/stream/")
        self.table_arn: str | None = None
        #: the full eventSourceARN the C planner accepts as is (anything else goes the Python way)
        self.stream_arn: str | None = None

    def pin(self, records: list[Any]) -> None:
        """Pin the table of the batch's first record, before the C planner sees the batch (it
        takes only records of the pinned stream, so the common batch stays on its path)."""
        if self.stream_arn is not None or not records:
            return
        raw = records[0]
        arn = raw.get("eventSourceARN") if type(raw) is dict else None
        table = table_arn_of(arn)
        if table is not None and self._is_source(table):
            self.table_arn, self.stream_arn = table, arn

    def _is_source(self, table_arn: str) -> bool:
        if self.wanted is None:
            return self.table_arn is None or table_arn == self.table_arn
        if self.wanted.startswith("arn:"):
            return table_arn == table_arn_of(self.wanted)
        return table_arn.rpartition(":table/")[2] == self.wanted

    def screen(self, changes: list[Change], bad: list[BadRecord]) -> list[Change]:
        """The changes of the pinned table (and those without eventSourceARN); a record of
        another table goes to ``bad``."""
        kept = []
        for change in changes:
            table = table_arn_of(change.event_source_arn)
            if table is not None and self.table_arn is None and self._is_source(table):
                self.table_arn = table
            if table is None or table == self.table_arn:
                if table is not None:
                    self.stream_arn = change.event_source_arn  # a new stream of the same table
                kept.append(change)
                continue
            error = UnsupportedRecordError(
                f"record of table {table}, but this Replicator replicates "
                + (f"{self.table_arn}" if self.table_arn else f"table {self.wanted!r}")
                + " (Settings.source_table, or the first table seen): give each table its own "
                "Replicator and collection",
                problem="record of another table",
                field_path="eventSourceARN",
            )
            bad.append(BadRecord.of(change, error))
        return kept

    def screen_kind(self, changes: list[Change], bad: list[BadRecord]) -> list[Change]:
        """The changes of the pinned source kind (Settings.source, or the first change's); a
        change of the other kind goes to ``bad``: a DynamoDB Streams sequence number and a
        Kinesis creation time cannot be ordered against each other (docs/kinesis.md)."""
        kept = []
        for change in changes:
            kind = "dynamodb" if change.order_key is None else "kinesis"
            if kind == "dynamodb" and change.sequence_number == COPY_SEQUENCE:
                # A copy of the table (replicator sync's scan or export, resync), not a stream's
                # change: "0" sorts below every DynamoDB Streams number and every Kinesis key,
                # so it is ordered against both, and pins neither (a Kinesis-fed collection
                # is copied first, docs/kinesis.md)
                kept.append(change)
                continue
            if self.kind is None:
                self.kind = kind
            if kind == self.kind:
                kept.append(change)
                continue
            names = {"dynamodb": "DynamoDB Streams", "kinesis": "Kinesis Data Streams"}
            error = UnsupportedRecordError(
                f"a {names[kind]} record, but this Replicator replicates from {names[self.kind]} "
                "(Settings.source / REPLICATOR_SOURCE, or the first record seen): their order "
                "keys cannot be compared; give each source its own function, or switch a "
                "collection as docs/kinesis.md (\"Switching\") says",
                problem="record of another source",
                field_path="eventSource",
            )
            bad.append(BadRecord.of(change, error))
        return kept
