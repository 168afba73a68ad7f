"""Faults that happen in production, injected on purpose.

- :class:`BulkWriteShim` gives a mongomock collection pymongo's ``bulk_write`` contract (a
  ``BulkWriteError`` with per-index write errors), so the replicator takes its real-MongoDB path and
  the fault wrapper below can sit in front of it.
- :class:`FaultyCollection` fails bulk writes the way a MongoDB deployment does: before anything is
  applied (connection reset, not primary), after k of n operations (a crash mid-batch), or after all
  of them with a write concern error.
- :func:`corrupt_record` makes a record malformed in flight (missing image, wrong type, unknown type
  tag, truncated number), keeping its identity so quarantine can be checked.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo.errors import AutoReconnect, BulkWriteError, NotPrimaryError, PyMongoError

from harness.backends.mongomock_target import MongomockCollection


@dataclass
class FaultPlan:
    """Rates are per bulk write or per record, in [0, 1]; the seed makes a plan reproducible."""

    seed: int = 0
    transient_error_rate: float = 0.0  # connection reset / not primary, nothing applied
    crash_mid_batch_rate: float = 0.0  # k of n operations applied, then the connection drops
    write_concern_error_rate: float = 0.0  # everything applied, acknowledgement failed
    handler_timeout_rate: float = 0.0  # the invocation dies after its writes (Lambda timeout)
    duplicate_delivery_rate: float = 0.0  # a successful batch is delivered again
    late_retry_rate: float = 0.0  # an old batch is delivered again after later ones
    malformed_rate: float = 0.0  # a corrupted copy of a record is injected into a batch
    max_batch: int = 10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def random(cls, rng: random.Random, seed: int) -> FaultPlan:
        def rate() -> float:
            return rng.choice([0.0, 0.0, 0.05, 0.15, 0.3])

        return cls(
            seed=seed,
            transient_error_rate=rate(),
            crash_mid_batch_rate=rate(),
            write_concern_error_rate=rate(),
            handler_timeout_rate=rate(),
            duplicate_delivery_rate=rate(),
            late_retry_rate=rate(),
            malformed_rate=rate(),
            max_batch=rng.choice([1, 2, 5, 10, 50]),
        )


@dataclass
class FaultLog:
    injected: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.injected[name] = self.injected.get(name, 0) + 1


class BulkWriteShim(MongomockCollection):
    """A mongomock collection with pymongo's ``bulk_write`` contract: the harness's mongomock
    adapter (harness.backends.mongomock_target), named for what the fault wrappers need of it.
    Subclasses may override ``apply_one`` to fail chosen operations."""


class FaultyCollection:
    """Wraps a collection that has ``bulk_write``; fails some bulk writes per the plan."""

    def __init__(self, collection: Any, plan: FaultPlan, log: FaultLog | None = None,
                 rng: random.Random | None = None) -> None:
        self.inner = collection
        self.plan = plan
        self.log = log or FaultLog()
        self.rng = rng or random.Random(plan.seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def bulk_write(self, requests: Sequence[Any], ordered: bool = True, **kwargs: Any) -> Any:
        requests = list(requests)
        roll = self.rng.random()
        plan = self.plan
        if roll < plan.transient_error_rate:
            self.log.count("transient_error")
            if self.rng.random() < 0.5:
                raise AutoReconnect("connection reset by peer (injected)")
            raise NotPrimaryError("not primary (injected)")
        roll -= plan.transient_error_rate
        if roll < plan.crash_mid_batch_rate and requests:
            self.log.count("crash_mid_batch")
            applied = self.rng.randrange(0, len(requests))
            for operation in requests[:applied]:
                # A stale write in the applied part fails alone, as on the server.
                with contextlib.suppress(PyMongoError):
                    _apply_single(self.inner, operation)
            raise AutoReconnect(f"connection lost after {applied} of {len(requests)} (injected)")
        roll -= plan.crash_mid_batch_rate
        result = self.inner.bulk_write(requests, ordered=ordered, **kwargs)
        if roll < plan.write_concern_error_rate:
            self.log.count("write_concern_error")
            raise BulkWriteError({"writeErrors": [], "writeConcernErrors": [
                {"code": 64, "errmsg": "waiting for replication timed out (injected)"}],
                "nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0,
                "upserted": []})
        return result


def _apply_single(collection: Any, operation: Any) -> None:
    if isinstance(collection, MongomockCollection):
        collection.apply_one(operation)
    else:
        collection.bulk_write([operation], ordered=True)


CORRUPTIONS = ("missing_new_image", "wrong_type", "unknown_tag", "truncated_number",
               "missing_sequence", "not_an_object")


def corrupt_record(record: dict[str, Any], rng: random.Random) -> tuple[str, Any]:
    """A corrupted copy of a Lambda record and the kind of corruption applied."""
    kind = rng.choice(CORRUPTIONS)
    bad = copy.deepcopy(record)
    body = bad.setdefault("dynamodb", {})
    bad["eventID"] = f"corrupt-{kind}-{record.get('eventID', '')}"
    image = body.get("NewImage") or body.get("OldImage") or body.get("Keys")
    if kind == "missing_new_image" and bad.get("eventName") in ("INSERT", "MODIFY"):
        body.pop("NewImage", None)
        body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    elif kind == "wrong_type":
        body["Keys"] = {name: {"S": 12345} for name in body.get("Keys", {"id": 1})}
    elif kind == "unknown_tag" and image:
        image[next(iter(image))] = {"XYZ": "?"}
        body["Keys"] = {name: {"XYZ": "?"} for name in body.get("Keys", {"id": 1})}
    elif kind == "truncated_number":
        body["Keys"] = {name: {"N": "12e"} for name in body.get("Keys", {"id": 1})}
    elif kind == "missing_sequence":
        body.pop("SequenceNumber", None)
    else:
        return "not_an_object", ["not", "a", "record"]
    return kind, bad


__all__ = [
    "BulkWriteShim",
    "FaultLog",
    "FaultPlan",
    "FaultyCollection",
    "corrupt_record",
]
