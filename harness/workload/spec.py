"""What a workload is: its settings (:class:`WorkloadSpec`), the operations planned from it
(:class:`Operation`) and what running them did (:class:`WorkloadResult`), plus the shared names."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import dynamodb_values
from harness.backends.base import TableSpec
from harness.dynamodb_values import AttributeValue

Item = dict[str, AttributeValue]
KeyTuple = tuple[Any, ...]  # wire scalar of each key attribute in key-schema order: str | bytes
Path = tuple[Any, ...]  # a document path: a top-level name, then map keys (str) / list indexes (int)
Action = tuple[str, Path, Any]  # ("SET" | "APPEND" | "REMOVE" | "ADD" | "DELETE", path, value)

OPERATIONS: tuple[str, ...] = (
    "put_new",
    "put_overwrite",
    "update_set",
    "update_remove",
    "update_add_number",
    "update_add_set",
    "update_delete_set",
    "delete",
    "conditional_fail",
    "batch_write",
    "transaction",
)
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "zipf", "sequential")
VALUE_PROFILES: tuple[str, ...] = ("simple", "type_zoo")
DEFAULT_MIX: dict[str, float] = {
    "put_new": 4,
    "put_overwrite": 2,
    "update_set": 3,
    "update_remove": 2,
    "delete": 1,
}

MAX_ITEM_BYTES = 400_000  # the most this workload writes, by item_size()
BATCH_MAX = 25
TRANSACTION_MAX = 10
TRANSACTION_BYTES = 3_500_000  # below TransactWriteItems' 4 MB aggregate item size



def check_item(item: Mapping[str, AttributeValue]) -> None:
    """ValueError unless DynamoDB accepts the item and it is within :data:`MAX_ITEM_BYTES`."""
    dynamodb_values.check_item(item, MAX_ITEM_BYTES)


# -- the spec ---------------------------------------------------------------------------------
@dataclass
class WorkloadSpec:
    """What to write. Plain data: a scenario's ``[workload]`` table fills it via :meth:`from_dict`.

    ``mix`` maps operation names (:data:`OPERATIONS`) to relative weights. ``keys`` is the size of
    the key space; with a sort key, key ``i`` is partition ``i // p``, sort ``i % p`` with
    ``p = round(sqrt(keys))``. ``item_size_bytes`` pads written items up to about that size (0: no
    padding), never above :data:`MAX_ITEM_BYTES`. ``rate_per_s`` limits operations per second over
    all writers (0: unthrottled); a batch or a transaction is one operation.
    """

    operations: int = 100
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    keys: int = 100
    key_distribution: str = "uniform"
    zipf_s: float = 1.2
    value_profile: str = "simple"
    item_size_bytes: int = 0
    rate_per_s: float = 0.0
    writers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.mix, Mapping):
            self.mix = dict(self.mix)
        self.validate()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadSpec:
        """Build from a mapping (a TOML table); ValueError names the first bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"workload: expected a table of settings, got {type(data).__name__}")
        known = [f for f in cls.__dataclass_fields__]
        for key in data:
            if key not in known:
                raise ValueError(
                    f"workload.{key}: unknown key; expected one of: {', '.join(sorted(known))}"
                )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        _int("operations", self.operations, 0)
        _int("keys", self.keys, 1)
        _int("item_size_bytes", self.item_size_bytes, 0, MAX_ITEM_BYTES)
        _int("writers", self.writers, 1, 64)
        _int("seed", self.seed, None)
        _number("zipf_s", self.zipf_s, positive=True)
        _number("rate_per_s", self.rate_per_s, positive=False)
        if self.key_distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"workload.key_distribution: {self.key_distribution!r}; "
                f"expected one of: {', '.join(DISTRIBUTIONS)}"
            )
        if self.value_profile not in VALUE_PROFILES:
            raise ValueError(
                f"workload.value_profile: {self.value_profile!r}; "
                f"expected one of: {', '.join(VALUE_PROFILES)}"
            )
        if not isinstance(self.mix, dict) or not self.mix:
            raise ValueError("workload.mix: expected a non-empty table of operation = weight")
        for name, weight in self.mix.items():
            if name not in OPERATIONS:
                raise ValueError(
                    f"workload.mix.{name}: unknown operation; expected one of: "
                    f"{', '.join(OPERATIONS)}"
                )
            _number(f"mix.{name}", weight, positive=False)
        if sum(self.mix.values()) <= 0:
            raise ValueError("workload.mix: at least one weight must be above 0")


def _int(name: str, value: Any, minimum: int | None, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"workload.{name}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"workload.{name}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"workload.{name}: {value} is above the maximum {maximum}")


def _number(name: str, value: Any, *, positive: bool) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"workload.{name}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"workload.{name}: must be above 0, got {value!r}")
    if value < 0:
        raise ValueError(f"workload.{name}: must not be negative, got {value!r}")


# -- operations and results -------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    """One API call: ``getattr(client, method)(**request)``.

    ``op`` is the kind actually planned: when the drawn kind is impossible (``put_new`` with every
    key present, ``delete`` with none...) the planner substitutes the closest possible one
    (put_new <-> put_overwrite, delete -> put_new, update_remove -> update_set,
    update_delete_set -> update_add_set -> update_set, update_add_number -> update_set; a
    ``conditional_fail`` transaction needs two keys of one writer, else it is a conditional
    PutItem). ``keys`` are the keys
    the call names, ``writes`` those whose item it changes (empty for a failing conditional write;
    a transaction's ConditionCheck is not a write). ``writer`` is the writer thread that owns them.
    """

    index: int
    op: str
    method: str
    request: dict[str, Any]
    keys: tuple[KeyTuple, ...]
    writes: tuple[KeyTuple, ...]
    writer: int = 0
    expect_condition_failure: bool = False
    idempotent: bool = True


@dataclass
class WorkloadResult:
    """What happened.

    ``total``: operations planned. ``counts``: operations that succeeded, per kind (a
    ``conditional_fail`` succeeds when its condition fails; ``failed_conditional`` counts those).
    ``retries``: calls repeated after throttling or a transient error (and unprocessed batch items
    resent). ``last_write``: key tuple -> ``time.time()`` after the last successful write to it.
    ``writes``: ``(time, key)`` for every successful write of a key, in time order, where ``key``
    is the wire-format key mapping (``{"id": {"S": "k1"}}``, the shape of a stream record's
    ``dynamodb.Keys``). ``errors``: messages of operations that failed (first
    :data:`MAX_ERRORS_KEPT`; ``error_count`` counts all).
    """

    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    failed_conditional: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    retries: int = 0
    last_write: dict[KeyTuple, float] = field(default_factory=dict)
    writes: list[tuple[float, Item]] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def summary(self) -> dict[str, Any]:
        return {
            "operations": self.total,
            "done": self.done,
            "counts": dict(sorted(self.counts.items())),
            "failed_conditional": self.failed_conditional,
            "errors": self.error_count,
            "first_errors": self.errors[:5],
            "retries": self.retries,
            "keys_written": len(self.last_write),
            "writes": len(self.writes),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def key_tuple(spec: TableSpec, keys: Mapping[str, Mapping[str, Any]]) -> KeyTuple:
    """The key tuple of a wire-format key or item (a stream record's ``Keys``)."""
    names = [spec.partition_key] + ([spec.sort_key] if spec.sort_key else [])
    return tuple(keys[name][kind] for name, kind in names)


