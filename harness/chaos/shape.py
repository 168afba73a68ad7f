"""What a chaos schedule runs besides its fault rates: the table and workload kind, the event
source mapping's concurrency, overlapping deliveries, the shard layout and the TTL mode.

Kept apart from :class:`harness.faults.FaultPlan` (the per-write fault rates) and recorded beside it
in a failing schedule's ``schedule.json``, so that ``harness replay`` rebuilds the same run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.backends.base import TableSpec
from harness.model import TTL_IDENTITY
from harness.workload import WorkloadSpec

#: Table / stream kinds a schedule draws from.
WORKLOADS: tuple[str, ...] = (
    "simple",  # S partition key
    "composite",  # S partition key + N sort key
    "number_key",  # N partition key
    "binary_key",  # B partition key
    "ttl",  # some REMOVEs are TTL expiries; ttl_deletes is drawn too
    "keys_only",  # StreamViewType KEYS_ONLY: the replicator reads the item back
    "old_image",  # StreamViewType OLD_IMAGE: read back too
    "transactions",  # TransactWriteItems among the writes
)
#: When the bulk of a timed-out invocation reaches the server (see drive.OverlapGate):
#: "during_retry": between the retry's tombstone probe and its main write;
#: "after_retry": once the retry finished, before the lane's next batch;
#: "after_later_batches": after later batches of the lane -- the race that only the deadline
#: closes (docs/write-errors.md, "A killed invocation's late bulk"); only focused tests use it.
#: Every release comes after the invocation's timeout: a bulk sent with its deadline is aborted.
RELEASES: tuple[str, ...] = ("during_retry", "after_retry", "after_later_batches")
#: Bugs planted on purpose, to show that chaos notices them (the guard has its own flag).
PLANTS: tuple[str, ...] = ("no_tombstones", "no_recheck", "children_first", "no_deadline",
                           "arrival_order")
#: Where a schedule's records come from: the table's DynamoDB stream, or the KDS source
#: (harness/kinesis.py: the same changes through a Kinesis data stream, shuffled and duplicated).
SOURCES: tuple[str, ...] = ("dynamodb", "kinesis")
#: What each planted bug needs in a schedule to show (``harness chaos --plant``): the shape
#: settings applied over the drawn ones. ``children_first`` needs the guard off too
#: (``--no-guard``): the guard alone keeps a child's older record from overwriting its parent's.
PLANT_FOCUS: dict[str, dict[str, Any]] = {
    "no_tombstones": {"concurrent_retry_rate": 0.3},
    "no_recheck": {"concurrent_retry_rate": 0.5, "overlap_rate": 0.0},
    "children_first": {"split_at": 0.5, "children": 2},
    "no_deadline": {"overlap_rate": 0.3, "overlap_release": "after_later_batches",
                    "concurrent_retry_rate": 0.0},
    # A replicator that orders a Kinesis source's changes by their arrival (the Kinesis sequence
    # number / approximateArrivalTimestamp) instead of their ApproximateCreationDateTime: the
    # shuffle and the duplicates then leave an older state last. Many keys' changes must share
    # the shuffle window for it to show; the guard stays on (it is what the bug feeds wrong).
    "arrival_order": {"source": "kinesis", "kds_shuffle_window": 12,
                      "kds_duplicate_rate": 0.3},
}

MIXES = [
    {"put_new": 3, "put_overwrite": 2, "update_set": 2, "update_remove": 2, "delete": 2},
    {"put_new": 1, "update_set": 3, "update_add_number": 2, "delete": 3},
    {"put_overwrite": 3, "delete": 3, "put_new": 2, "batch_write": 1},
    {"put_new": 2, "update_remove": 2, "update_add_set": 1, "update_delete_set": 1, "delete": 2},
]


@dataclass
class Shape:
    workload: str = "simple"
    #: ParallelizationFactor: concurrent batches per shard, each in its own thread
    parallelization_factor: int = 1
    #: per invocation: it times out at once while its writes stay in flight (see OverlapGate)
    overlap_rate: float = 0.0
    overlap_release: str = "after_retry"
    #: per invocation: an earlier batch of the lane is delivered again *beside* this one, its
    #: writes held between the tombstone probe and the upsert until this one finished
    concurrent_retry_rate: float = 0.0
    #: split the stream's shard: this fraction of its records stays in the parent (None: no split)
    split_at: float | None = None
    #: children of the split parent (DynamoDB: one or two); one key always goes to one child
    children: int = 1
    ttl_deletes: str = "delete"
    plants: list[str] = field(default_factory=list)
    #: Settings.write_mode (never drawn: a shape override, e.g. {"write_mode": "merge"})
    write_mode: str = "replace"
    #: the records' source (SOURCES); never drawn (a shape option): "kinesis" puts the changes
    #: through harness.kinesis.KdsFeed, a shard split becomes a Kinesis SplitShard at split_at
    source: str = "dynamodb"
    kds_precision: str = "MILLISECOND"
    kds_shuffle_window: int = 8
    kds_duplicate_rate: float = 0.15

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload {self.workload!r}; expected one of {', '.join(WORKLOADS)}")
        if self.overlap_release not in RELEASES:
            raise ValueError(f"overlap_release {self.overlap_release!r}; expected one of {RELEASES}")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r}; expected one of {SOURCES}")
        unknown = set(self.plants) - set(PLANTS)
        if unknown:
            raise ValueError(f"unknown planted bug(s) {sorted(unknown)}; expected {PLANTS}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shape:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown schedule shape setting(s): {sorted(unknown)}")
        return cls(**dict(data))

    @classmethod
    def random(cls, rng: random.Random) -> Shape:
        workload = rng.choice(WORKLOADS)
        split = rng.random() < 0.4
        return cls(
            workload=workload,
            parallelization_factor=rng.choice([1, 1, 2, 3, 5, 10]),
            overlap_rate=rng.choice([0.0, 0.0, 0.1, 0.3]),
            overlap_release=rng.choice(RELEASES[:2]),
            concurrent_retry_rate=rng.choice([0.0, 0.0, 0.1, 0.3]),
            split_at=round(rng.uniform(0.1, 0.9), 3) if split else None,
            children=rng.choice([1, 2]),
            ttl_deletes=rng.choice(["delete", "ignore", "archive"]) if workload == "ttl" else "delete",
        )


def table_for(shape: Shape, name: str) -> TableSpec:
    kind = shape.workload
    if kind == "composite":
        return TableSpec(name=name, partition_key=("pk", "S"), sort_key=("sk", "N"))
    if kind == "number_key":
        return TableSpec(name=name, partition_key=("id", "N"))
    if kind == "binary_key":
        return TableSpec(name=name, partition_key=("id", "B"))
    if kind in ("keys_only", "old_image"):
        return TableSpec(name=name, partition_key=("id", "S"),
                         stream_view_type="KEYS_ONLY" if kind == "keys_only" else "OLD_IMAGE")
    return TableSpec(name=name, partition_key=("id", "S"))


def workload_for(shape: Shape, rng: random.Random, seed: int) -> WorkloadSpec:
    mix = dict(rng.choice(MIXES))
    if shape.workload == "transactions":
        mix["transaction"] = 2
    if shape.workload == "ttl":
        mix["delete"] = mix.get("delete", 0) + 2
    return WorkloadSpec.from_dict({
        "operations": rng.randint(8, 30),
        "keys": rng.randint(2, 8) if shape.workload != "composite" else rng.randint(4, 12),
        "mix": mix,
        "value_profile": rng.choice(["simple", "simple", "type_zoo"]),
        "seed": seed,
    })


def mark_ttl_expiries(records: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Turn about half of the REMOVE records into TTL expiries: the same record with
    ``userIdentity`` naming the DynamoDB service ("Using DynamoDB Streams and Time to Live")."""
    out = []
    for record in records:
        if record.get("eventName") == "REMOVE" and rng.random() < 0.5:
            record = copy.deepcopy(record)
            record["userIdentity"] = dict(TTL_IDENTITY)
        out.append(record)
    return out


def is_ttl(record: Mapping[str, Any]) -> bool:
    identity = record.get("userIdentity") or {}
    return bool(identity.get("principalId") == TTL_IDENTITY["principalId"])


ShardLayout = list[tuple[str, str | None, list[dict[str, Any]]]]


def split_shards(shard_id: str, records: list[dict[str, Any]], shape: Shape,
                 partition_key: str) -> ShardLayout:
    """Cut one shard's records into a parent and its children at ``shape.split_at``: the parent
    keeps the first part, each later record goes to the child its partition key hashes to (a
    split divides the key space, so one key's later records are all in one child)."""
    if shape.split_at is None or not records:
        return [(shard_id, None, records)]
    cut = int(len(records) * shape.split_at)
    children: list[list[dict[str, Any]]] = [[] for _ in range(shape.children)]
    for record in records[cut:]:
        key = (record.get("dynamodb", {}).get("Keys") or {}).get(partition_key)
        text = json.dumps(key, sort_keys=True, default=lambda b: bytes(b).hex())
        children[int(hashlib.md5(text.encode()).hexdigest(), 16) % len(children)].append(record)
    layout: ShardLayout = [(shard_id, None, records[:cut])]
    layout += [(f"{shard_id}-child{n}", shard_id, part) for n, part in enumerate(children)]
    return layout


def key_id(keys: Mapping[str, Any]) -> str:
    return json.dumps(keys, sort_keys=True, default=lambda b: bytes(b).hex())


def expected_items(items: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                   shape: Shape, key_schema: Sequence[str]) -> list[dict[str, Any]]:
    """What the collection must hold: the table, except that with ``ttl_deletes="ignore"`` an
    item whose last record is a TTL expiry stays as it was before it (its old image)."""
    expected = [dict(item) for item in items]
    if shape.ttl_deletes != "ignore":
        return expected
    from harness.kinesis import change_of

    # Kinesis records (a KDS recording replayed): their changes, by creation time
    changes = [change_of(r) or r for r in records]
    last: dict[str, Mapping[str, Any]] = {}
    for record in sorted(changes, key=lambda r: int(r["dynamodb"].get(
            "SequenceNumber", r["dynamodb"].get("ApproximateCreationDateTime", 0)))):
        last[key_id(record["dynamodb"]["Keys"])] = record
    for record in last.values():
        old = record["dynamodb"].get("OldImage")
        if is_ttl(record) and old:
            expected.append(dict(old))
    return expected
