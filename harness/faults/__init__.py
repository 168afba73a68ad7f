"""Faults that happen in production, injected on purpose.

- :mod:`harness.faults.plan`: :class:`FaultPlan` (a schedule's seeded rates, serializable so a
  recording replays them) and :class:`FaultLog` (what was injected).
- :mod:`harness.faults.collection`: :class:`FaultyCollection`, the main collection's bulk write
  faults (nothing applied, a prefix, an arbitrary subset, a write concern error, permanent
  per-document errors, a failover rollback), over :class:`BulkWriteShim` (mongomock with
  pymongo's ``bulk_write`` contract).
- :mod:`harness.faults.side`: :class:`FaultySideCollection`, faults of the tombstone, quarantine
  and archive collections (connection loss, timeouts, createIndex failing).
- :mod:`harness.faults.records`: :func:`corrupt_record`, records made malformed in flight.
"""

from harness.faults.collection import PERMANENT_CODES, BulkWriteShim, FaultyCollection
from harness.faults.plan import FaultLog, FaultPlan, Rollback
from harness.faults.records import CORRUPTIONS, corrupt_record
from harness.faults.side import FaultySideCollection, faulty_sides

__all__ = [
    "CORRUPTIONS",
    "PERMANENT_CODES",
    "BulkWriteShim",
    "FaultLog",
    "FaultPlan",
    "FaultyCollection",
    "FaultySideCollection",
    "Rollback",
    "corrupt_record",
    "faulty_sides",
]
