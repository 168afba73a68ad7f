"""Where each segment of a Parallel Scan copy is, kept in MongoDB beside the data.

One document per (table, TotalSegments, Segment): the ``LastEvaluatedKey`` of the last page whose
writes MongoDB acknowledged, the items copied, and ``done`` once the segment's last page is in.
A killed copy restarts each unfinished segment at ``ExclusiveStartKey = last_evaluated_key``
(DynamoDB Scan docs: "Paginating table scan results") and skips finished ones; the page after a
saved key may be copied twice, which the stale-write guard makes harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

SUFFIX = "_sync"
KIND = "scan-segment"


@dataclass(frozen=True)
class SegmentState:
    segment: int
    total_segments: int
    last_evaluated_key: dict[str, Any] | None
    done: bool
    items: int


class SegmentStore:
    """Segment positions of one table's copy in ``collection`` (default ``<collection>_sync``)."""

    def __init__(self, collection: Any, table: str) -> None:
        self.collection = collection
        self.table = table

    @classmethod
    def beside(cls, target: Any, table: str, name: str | None = None) -> SegmentStore:
        return cls(target.database[name or f"{target.name}{SUFFIX}"], table)

    def _id(self, segment: int, total: int) -> str:
        return f"{self.table}#{KIND}#{total}#{segment}"

    def load(self, total_segments: int) -> dict[int, SegmentState]:
        found: dict[int, SegmentState] = {}
        for document in self.collection.find({"kind": KIND, "table": self.table,
                                              "total_segments": total_segments}):
            found[int(document["segment"])] = SegmentState(
                segment=int(document["segment"]), total_segments=total_segments,
                last_evaluated_key=document.get("last_evaluated_key"),
                done=bool(document.get("done")), items=int(document.get("items", 0)))
        return found

    def other_layouts(self, total_segments: int) -> list[int]:
        """TotalSegments of unfinished copies with another layout (a resume must use the same)."""
        return sorted({int(d["total_segments"]) for d in self.collection.find(
            {"kind": KIND, "table": self.table, "done": False,
             "total_segments": {"$ne": total_segments}})})

    def save(self, segment: int, total: int, last_evaluated_key: dict[str, Any] | None,
             items: int) -> None:
        """The page ending at ``last_evaluated_key`` is in MongoDB (None: the segment is done)."""
        self.collection.update_one(
            {"_id": self._id(segment, total)},
            {"$set": {"kind": KIND, "table": self.table, "segment": segment,
                      "total_segments": total, "last_evaluated_key": last_evaluated_key,
                      "done": last_evaluated_key is None, "items": items,
                      "updated_at": datetime.now(timezone.utc)}},
            upsert=True)

    def clear(self) -> int:
        """Forget every segment of the table (a new copy from the start)."""
        return int(self.collection.delete_many({"kind": KIND, "table": self.table}).deleted_count)
