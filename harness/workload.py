"""Seeded, reproducible DynamoDB workloads written through a low-level boto3 ``dynamodb`` client.

A workload is plain data (:class:`WorkloadSpec`, filled from a scenario's ``[workload]`` table).
:func:`plan_operations` turns it into a list of :class:`Operation` without any I/O: the same
spec and seed give the same operations, in the same order, with the same requests. The planner
keeps a model of the table (assumed empty at the start) so that every operation does what its name
says (a ``put_overwrite`` replaces an existing item, an ``update_remove`` removes attributes that
exist, a ``conditional_fail`` fails) and so that every write changes the item (DynamoDB emits no
stream record for a write that changes nothing). :func:`expected_state` is that model at the end.

:func:`run_workload` sends the operations. With ``writers > 1`` each key belongs to one writer
thread (by a hash of the key), so the writes to any one key happen in plan order and the final
table is the same as with one writer. Multi-key operations (BatchWriteItem, TransactWriteItems)
only group keys of one writer (so their grouping depends on ``writers``), and a transaction runs
while no other operation does (moto restores a whole-table snapshot when one is cancelled).

Values are wire format (``{"S": ..}``, ``{"N": "19.99"}``, ``{"B": b".."}``, ...). The planner
checks every item it would produce against DynamoDB's rules (:func:`check_item`: size, nesting,
number range and precision, non-empty sets without duplicates) and stays under
:data:`MAX_ITEM_BYTES` by its own count (:func:`item_size`).
"""

from __future__ import annotations

import bisect
import math
import queue
import random
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from harness.backends.base import TableSpec

__all__ = [
    "DISTRIBUTIONS",
    "EDGE_NUMBERS",
    "ITEM_SIZE_LIMIT",
    "MAX_ITEM_BYTES",
    "MAX_NESTING",
    "OPERATIONS",
    "VALUE_PROFILES",
    "Operation",
    "WorkloadResult",
    "WorkloadSpec",
    "attribute_size",
    "check_item",
    "check_number",
    "expected_state",
    "item_size",
    "iter_operations",
    "key_tuple",
    "nesting_depth",
    "plan_operations",
    "run_workload",
]

AttributeValue = dict[str, Any]
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

ITEM_SIZE_LIMIT = 400 * 1024  # DynamoDB's maximum item size
MAX_ITEM_BYTES = 400_000  # the most this workload writes, by item_size()
MAX_NESTING = 32  # DynamoDB's nesting limit; the planner stays strictly below it
BATCH_MAX = 25
TRANSACTION_MAX = 10
TRANSACTION_BYTES = 3_500_000  # below TransactWriteItems' 4 MB aggregate item size
DEEP_NESTING = 30  # containers in type_zoo's "deep" attribute

# Numbers DynamoDB accepts that often break conversions: decimals that floats round, int64 edges,
# 38 significant digits, the ends of the exponent range, trailing zeros.
EDGE_NUMBERS: tuple[str, ...] = (
    "19.99",
    "5.00",
    "0",
    "-1",
    "0.1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "12345678901234567890123456789012345678",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "3.1415926535897932384626433832795028841",
    "1E+125",
    "-1E+125",
    "9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "-1E-130",
    "1.0E+2",
)

# Retries: throttling-like errors always (the write did not happen); errors after which the write
# may or may not have happened (5xx, connection) only for idempotent operations.
MAX_ATTEMPTS = 8
BATCH_MAX_ATTEMPTS = 12
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 2.0
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)
AMBIGUOUS_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "ServiceUnavailable", "InternalServerErrorException"}
)
RETRYABLE_CANCELLATION = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
MAX_ERRORS_KEPT = 200


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


# -- DynamoDB's rules -------------------------------------------------------------------------
_NUMBER_SYNTAX = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def check_number(text: str) -> None:
    """ValueError unless DynamoDB accepts ``text`` as a number (38 digits, 1E-130..<1E+126)."""
    if not isinstance(text, str) or not _NUMBER_SYNTAX.fullmatch(text):
        raise ValueError(f"not a DynamoDB number: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a DynamoDB number: {text!r}") from None
    if value == 0:
        return
    digits = "".join(map(str, value.as_tuple().digits)).strip("0")
    if len(digits) > 38:
        raise ValueError(f"number {text!r} has {len(digits)} significant digits (at most 38)")
    if not -130 <= value.adjusted() <= 125:
        raise ValueError(f"number {text!r} is out of DynamoDB's range (1E-130 to 9.99..E+125)")


def _number_size(text: str) -> int:
    value = Decimal(text)
    digits = "".join(map(str, value.as_tuple().digits)).strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def attribute_size(value: AttributeValue) -> int:
    """Bytes an attribute value counts toward the item size (rounded up where AWS is vague)."""
    ((tag, data),) = value.items()
    if tag == "S":
        return len(data.encode())
    if tag == "B":
        return len(data)
    if tag == "N":
        return _number_size(data)
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(s.encode()) for s in data)
    if tag == "BS":
        return sum(len(b) for b in data)
    if tag == "NS":
        return sum(_number_size(n) for n in data)
    if tag == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in data.items())
    if tag == "L":
        return 3 + sum(attribute_size(v) + 1 for v in data)
    raise ValueError(f"unknown attribute type {tag!r}")


def item_size(item: Mapping[str, AttributeValue]) -> int:
    """An item's size as DynamoDB counts it: names plus values (see :func:`attribute_size`)."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def nesting_depth(value: AttributeValue) -> int:
    """Containers (M, L) on the deepest path of a value: a scalar is 0, ``{"M": {"a": S}}`` 1."""
    ((tag, data),) = value.items()
    if tag == "M":
        return 1 + max((nesting_depth(v) for v in data.values()), default=0)
    if tag == "L":
        return 1 + max((nesting_depth(v) for v in data), default=0)
    return 0


def check_item(item: Mapping[str, AttributeValue]) -> None:
    """ValueError unless DynamoDB accepts the item (size, nesting, numbers, sets)."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ValueError(f"item is {size} bytes, above {MAX_ITEM_BYTES}")
    for name, value in item.items():
        if not name:
            raise ValueError("empty attribute name")
        if nesting_depth(value) >= MAX_NESTING:
            raise ValueError(f"attribute {name!r} nests {nesting_depth(value)} levels")
        _check_value(name, value)


def _check_value(path: str, value: AttributeValue) -> None:
    if len(value) != 1:
        raise ValueError(f"{path}: an attribute value has exactly one type: {value!r}")
    ((tag, data),) = value.items()
    if tag == "N":
        check_number(data)
    elif tag in ("SS", "NS", "BS"):
        if not data:
            raise ValueError(f"{path}: empty set")
        marks = [_element_key(tag, e) for e in data]
        if len(set(marks)) != len(marks):
            raise ValueError(f"{path}: duplicate set elements")
        if tag == "NS":
            for n in data:
                check_number(n)
    elif tag == "M":
        for k, v in data.items():
            _check_value(f"{path}.{k}", v)
    elif tag == "L":
        for i, v in enumerate(data):
            _check_value(f"{path}[{i}]", v)
    elif tag == "S" and not isinstance(data, str):
        raise ValueError(f"{path}: S holds {type(data).__name__}")
    elif tag == "B" and not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"{path}: B holds {type(data).__name__}")
    elif tag not in ("S", "B", "BOOL", "NULL"):
        raise ValueError(f"{path}: unknown type {tag!r}")


def _element_key(tag: str, element: Any) -> Any:
    return Decimal(element) if tag == "NS" else element


# -- value generators -------------------------------------------------------------------------
Generator = Callable[[random.Random], AttributeValue]

_WORDS = (
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi",
)  # fmt: skip
_UNICODE = (
    "héllo wörld",
    "日本語のテキスト",
    "emoji 🎉🚀",
    "Ελληνικά",
    "עברית",
    "Привет",
    "zero\u200bwidth",
    "tab\tand\nnewline",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "ﬁ ligature, e\u0301 combining",
)


def _s(rng: random.Random) -> AttributeValue:
    return {"S": f"{rng.choice(_WORDS)}-{rng.randrange(10**6)}"}


def _s_unicode(rng: random.Random) -> AttributeValue:
    return {"S": f"{rng.choice(_UNICODE)} {rng.randrange(1000)}"}


def _n_int(rng: random.Random) -> AttributeValue:
    return {"N": str(rng.randrange(-(10**6), 10**6))}


def _n_price(rng: random.Random) -> AttributeValue:
    return {"N": f"{rng.randrange(10000)}.{rng.randrange(100):02d}"}


def _n_edge(rng: random.Random) -> AttributeValue:
    return {"N": rng.choice(EDGE_NUMBERS)}


def _bytes(rng: random.Random, low: int = 1, high: int = 16) -> bytes:
    return bytes([0, 255])[: rng.randrange(3)] + rng.randbytes(rng.randint(low, high))


def _b(rng: random.Random) -> AttributeValue:
    return {"B": _bytes(rng)}


def _bool(rng: random.Random) -> AttributeValue:
    return {"BOOL": rng.random() < 0.5}


def _distinct(rng: random.Random, tag: str, make: Callable[[], Any], low: int, high: int) -> list[Any]:
    wanted = rng.randint(low, high)
    out: list[Any] = []
    marks: list[Any] = []
    for _ in range(wanted * 4):
        element = make()
        mark = _element_key(tag, element)
        if mark not in marks:
            out.append(element)
            marks.append(mark)
        if len(out) >= wanted:
            break
    return out


def _ss_element(rng: random.Random, zoo: bool) -> str:
    if zoo and rng.random() < 0.3:
        return f"{rng.choice(_UNICODE)}{rng.randrange(100)}"
    return f"{rng.choice(_WORDS)}{rng.randrange(100)}" if rng.random() < 0.5 else rng.choice(_WORDS)


def _ns_element(rng: random.Random) -> str:
    return rng.choice(EDGE_NUMBERS) if rng.random() < 0.4 else str(rng.randrange(-1000, 1000))


def _ss(rng: random.Random) -> AttributeValue:
    return {"SS": _distinct(rng, "SS", lambda: _ss_element(rng, False), 1, 4)}


def _ss_zoo(rng: random.Random) -> AttributeValue:
    return {"SS": _distinct(rng, "SS", lambda: _ss_element(rng, True), 1, 5)}


def _ns(rng: random.Random) -> AttributeValue:
    return {"NS": _distinct(rng, "NS", lambda: _ns_element(rng), 1, 5)}


def _bs(rng: random.Random) -> AttributeValue:
    return {"BS": _distinct(rng, "BS", lambda: _bytes(rng, 1, 8), 1, 4)}


def _profile(rng: random.Random) -> AttributeValue:
    doc: dict[str, AttributeValue] = {
        "city": {"S": rng.choice(("Lyon", "Oslo", "Kyoto", "Lima", "Perth"))},
        "zip": {"S": f"{rng.randrange(100000):05d}"},
        "score": {"N": str(rng.randrange(100))},
    }
    if rng.random() < 0.6:
        doc["prefs"] = {"M": {"theme": {"S": rng.choice(("dark", "light"))}, "lang": {"S": "en"}}}
    return {"M": doc}


def _history(rng: random.Random) -> AttributeValue:
    return {"L": [_n_int(rng) if rng.random() < 0.5 else _s(rng) for _ in range(rng.randint(1, 4))]}


def _m_doc(rng: random.Random) -> AttributeValue:
    return {
        "M": {
            "a.b": _s_unicode(rng),
            "$ref": _s(rng),
            "inner": {
                "M": {
                    "x": _n_edge(rng),
                    "empty_m": {"M": {}},
                    "empty_l": {"L": []},
                    "bin": _b(rng),
                    "empty_s": {"S": ""},
                    "nul": {"NULL": True},
                }
            },
            "arr": {"L": [_n_edge(rng), _s(rng), {"M": {"k": _s(rng)}}]},
            "t": _bool(rng),
            "tags": _ss_zoo(rng),
        }
    }


def _l_mixed(rng: random.Random) -> AttributeValue:
    elements = [
        _s_unicode(rng),
        _n_edge(rng),
        _b(rng),
        _bool(rng),
        {"NULL": True},
        {"M": {}},
        {"L": []},
        {"M": {"k": {"L": [_n_edge(rng)]}, "$x": {"S": ""}}},
        {"L": [{"L": [_s(rng)]}]},
        _ns(rng),
        {"B": b""},
    ]
    return {"L": elements[: rng.randint(4, len(elements))]}


def _meta(rng: random.Random) -> AttributeValue:
    return {
        "M": {
            "$inner": _s(rng),
            "x.y": _n_edge(rng),
            "$$": {"M": {"deeper": _s_unicode(rng)}},
        }
    }


def _deep(rng: random.Random) -> AttributeValue:
    value: AttributeValue = _n_edge(rng)
    for level in range(DEEP_NESTING):
        value = {"M": {f"d{level}": value}} if level % 2 else {"L": [value]}
    return value


def _var(rng: random.Random) -> AttributeValue:
    makers: list[Generator] = [
        _s,
        _n_edge,
        _b,
        _bool,
        lambda r: {"NULL": True},
        lambda r: {"M": {"v": _s(r)}},
        lambda r: {"L": [_n_int(r)]},
        _ss,
    ]
    return rng.choice(makers)(rng)


# name -> (kind, generator); kinds: plain, counter (ADD number), set (ADD/DELETE), map, list
_SIMPLE: dict[str, tuple[str, Generator]] = {
    "name": ("plain", _s),
    "price": ("plain", _n_price),
    "qty": ("counter", lambda r: {"N": str(r.randrange(1000))}),
    "active": ("plain", _bool),
    "tags": ("set", _ss),
    "profile": ("map", _profile),
    "checksum": ("plain", lambda r: {"B": r.randbytes(4)}),
    "history": ("list", _history),
    "note": ("plain", _s),
}
_ZOO: dict[str, tuple[str, Generator]] = {
    "s_ascii": ("plain", _s),
    "s_unicode": ("plain", _s_unicode),
    "s_empty": ("plain", lambda r: {"S": ""}),
    "n_int": ("plain", _n_int),
    "n_decimal": ("plain", _n_price),
    "n_edge": ("plain", _n_edge),
    "b_bytes": ("plain", _b),
    "b_empty": ("plain", lambda r: {"B": b""}),
    "null": ("plain", lambda r: {"NULL": True}),
    "flag": ("plain", _bool),
    "a.b": ("plain", _s_unicode),
    "$meta": ("map", _meta),
    "m_doc": ("map", _m_doc),
    "l_mixed": ("list", _l_mixed),
    "deep": ("plain", _deep),
    "var": ("plain", _var),
    "counter": ("counter", lambda r: {"N": str(r.randrange(-50, 1000))}),
    "ss": ("set", _ss_zoo),
    "ns": ("set", _ns),
    "bs": ("set", _bs),
}
_SET_TAGS = {"tags": "SS", "ss": "SS", "ns": "NS", "bs": "BS"}
_CHILD_NAMES = {
    "simple": ("x", "y", "k1", "k2"),
    "type_zoo": ("x", "y", "new.key", "$dollar", "ü", "k1"),
}


def _small_value(rng: random.Random, zoo: bool) -> AttributeValue:
    makers: list[Generator] = [_s, _n_int, _bool]
    if zoo:
        makers += [_n_edge, _b, _s_unicode, lambda r: {"NULL": True}, lambda r: {"M": {"z": _s(r)}}]
    return rng.choice(makers)(rng)


# -- the model --------------------------------------------------------------------------------
_CONTEXT = Context(prec=60)


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _container(item: Item, path: Path) -> Any:
    """The dict (map / top level) or list holding the last segment of ``path``."""
    holder: Any = item
    for segment in path[:-1]:
        value = holder[segment]
        ((_, holder),) = value.items()
    return holder


def apply_actions(item: Item, actions: Sequence[Action]) -> Item:
    """A copy of ``item`` after an UpdateItem made of ``actions`` (one per top-level attribute)."""
    new: Item = _clone(item)
    for kind, path, value in actions:
        holder = _container(new, path)
        last = path[-1]
        if kind == "SET":
            holder[last] = _clone(value)
        elif kind == "APPEND":
            holder[last] = {"L": holder[last]["L"] + _clone(value["L"])}
        elif kind == "REMOVE":
            if isinstance(last, int):
                if last < len(holder):
                    del holder[last]
            else:
                holder.pop(last, None)
        elif kind == "ADD":
            current = holder.get(last)
            if "N" in value:
                base = Decimal(current["N"]) if current else Decimal(0)
                total = _CONTEXT.add(base, Decimal(value["N"]))
                holder[last] = {"N": str(total)}
            else:
                ((tag, elements),) = value.items()
                existing = list(current[tag]) if current else []
                marks = [_element_key(tag, e) for e in existing]
                for element in elements:
                    if _element_key(tag, element) not in marks:
                        existing.append(element)
                        marks.append(_element_key(tag, element))
                holder[last] = {tag: existing}
        elif kind == "DELETE":
            current = holder.get(last)
            if current:
                ((tag, elements),) = value.items()
                gone = [_element_key(tag, e) for e in elements]
                kept = [e for e in current[tag] if _element_key(tag, e) not in gone]
                if kept:
                    holder[last] = {tag: kept}
                else:
                    del holder[last]
        else:  # pragma: no cover - planner bug
            raise ValueError(f"unknown action {kind!r}")
    return new


class _Expression:
    """Placeholders for names and values of one request."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValue] = {}
        self._ids: dict[str, str] = {}

    def name(self, name: str) -> str:
        if name not in self._ids:
            placeholder = f"#n{len(self._ids)}"
            self._ids[name] = placeholder
            self.names[placeholder] = name
        return self._ids[name]

    def value(self, value: AttributeValue) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def path(self, path: Path) -> str:
        parts: list[str] = []
        for segment in path:
            if isinstance(segment, int):
                parts[-1] += f"[{segment}]"
            else:
                parts.append(self.name(segment))
        return ".".join(parts)

    def update(self, actions: Sequence[Action]) -> str:
        clauses: dict[str, list[str]] = {"SET": [], "REMOVE": [], "ADD": [], "DELETE": []}
        for kind, path, value in actions:
            target = self.path(path)
            if kind == "SET":
                clauses["SET"].append(f"{target} = {self.value(value)}")
            elif kind == "APPEND":
                clauses["SET"].append(f"{target} = list_append({target}, {self.value(value)})")
            elif kind == "REMOVE":
                clauses["REMOVE"].append(target)
            else:
                clauses[kind].append(f"{target} {self.value(value)}")
        return " ".join(f"{k} {', '.join(v)}" for k, v in clauses.items() if v)

    def attach(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.names:
            request["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            request["ExpressionAttributeValues"] = dict(self.values)
        return request


@dataclass
class _Plan:
    op: str
    method: str
    request: dict[str, Any]
    keys: list[int]
    after: dict[int, Item | None]
    expect_failure: bool = False
    idempotent: bool = True


class _Planner:
    def __init__(self, spec: TableSpec, workload: WorkloadSpec) -> None:
        workload.validate()
        self.spec = spec
        self.w = workload
        self.table = spec.name
        self.rng = random.Random(workload.seed)
        self.zoo = workload.value_profile == "type_zoo"
        self.state: dict[int, Item] = {}
        self.index = 0
        self.seq = 0
        taken = set(spec.key_schema)
        self.rev = _fresh("rev", taken)
        taken.add(self.rev)
        self.pad = _fresh("pad", taken)
        taken.add(self.pad)
        source = _ZOO if self.zoo else _SIMPLE
        self.catalog = {n: entry for n, entry in source.items() if n not in taken}
        self.names = list(self.catalog)
        self.counters = [n for n, (kind, _) in self.catalog.items() if kind == "counter"]
        self.sets = [n for n, (kind, _) in self.catalog.items() if kind == "set"]
        self.children = _CHILD_NAMES[workload.value_profile]
        self.protected = set(spec.key_schema) | {self.pad}
        self.per_partition = max(1, round(math.sqrt(workload.keys))) if spec.sort_key else 1
        self.target = min(workload.item_size_bytes, MAX_ITEM_BYTES)
        self._keys: dict[int, Item] = {}
        self._shards: dict[int, int] = {}
        self.zipf: list[float] = []
        if workload.key_distribution == "zipf":
            total = 0.0
            for rank in range(1, workload.keys + 1):
                total += rank ** -workload.zipf_s
                self.zipf.append(total)
        self.mix_names = [n for n in OPERATIONS if workload.mix.get(n, 0) > 0]
        self.mix_cum: list[float] = []
        running = 0.0
        for name in self.mix_names:
            running += float(workload.mix[name])
            self.mix_cum.append(running)

    # keys
    def key(self, i: int) -> Item:
        if i not in self._keys:
            if self.spec.sort_key:
                partition, sort = divmod(i, self.per_partition)
                key = {
                    self.spec.partition_key[0]: self._key_value(self.spec.partition_key[1], partition, "p"),
                    self.spec.sort_key[0]: self._key_value(self.spec.sort_key[1], sort, "s"),
                }
            else:
                key = {self.spec.partition_key[0]: self._key_value(self.spec.partition_key[1], i, "k")}
            self._keys[i] = key
        return self._keys[i]

    def _key_value(self, kind: str, n: int, prefix: str) -> AttributeValue:
        if kind == "N":
            return {"N": str(n)}
        if kind == "B":
            return {"B": b"\x00" + n.to_bytes(4, "big") + b"\xff"}
        if self.zoo:
            return {"S": f"{prefix}{n:06d}-ключ✓"}
        return {"S": f"{prefix}{n:06d}"}

    def ktuple(self, i: int) -> KeyTuple:
        return key_tuple(self.spec, self.key(i))

    def shard(self, i: int) -> int:
        if self.w.writers == 1:
            return 0
        if i not in self._shards:
            self._shards[i] = zlib.crc32(repr(self.ktuple(i)).encode()) % self.w.writers
        return self._shards[i]

    def draw(self) -> int:
        distribution = self.w.key_distribution
        if distribution == "sequential":
            i = self.seq % self.w.keys
            self.seq += 1
            return i
        if distribution == "zipf":
            at = bisect.bisect_left(self.zipf, self.rng.random() * self.zipf[-1])
            return min(at, self.w.keys - 1)
        return self.rng.randrange(self.w.keys)

    def pick(
        self, accept: Callable[[int], bool], shard: int | None = None, existing: bool = False
    ) -> int | None:
        """A key by the distribution that ``accept``s, else the next one that does (or None).

        ``existing``: ``accept`` is only true for keys in the model (scan only those).
        """

        def ok(i: int) -> bool:
            return (shard is None or self.shard(i) == shard) and accept(i)

        i = 0
        for _ in range(16):
            i = self.draw()
            if ok(i):
                return i
        if existing:
            pool: Sequence[int] = sorted(self.state)
            start = bisect.bisect_right(pool, i)
        else:
            pool = range(self.w.keys)
            start = i + 1
        for step in range(len(pool)):
            j = pool[(start + step) % len(pool)]
            if ok(j):
                return j
        return None

    def exists(self, i: int) -> bool:
        return i in self.state

    def missing(self, i: int) -> bool:
        return i not in self.state

    # values
    def new_item(self, i: int, replacing: Item | None = None) -> Item:
        rng = self.rng
        item: Item = _clone(self.key(i))
        item[self.rev] = {"N": str(self.index)}
        present = [n for n in (replacing or {}) if n not in self.protected]
        if replacing is not None and len(present) >= 2 and rng.random() < 0.8:
            chosen = rng.sample(self.names, min(len(self.names), rng.randint(0, len(present) - 2)))
        else:
            share = 0.8 if self.zoo else 0.7
            chosen = [n for n in self.names if rng.random() < share]
        for name in chosen:
            item[name] = self.catalog[name][1](rng)
        if self.target:
            room = self.target - item_size(item) - len(self.pad.encode())
            if room > 0:
                item[self.pad] = {"S": self.pad_text(room)}
        check_item(item)
        return item

    def pad_text(self, length: int) -> str:
        stamp = f"{self.index:x}.{self.rng.getrandbits(48):012x}|"
        return (stamp * (length // len(stamp) + 1))[:length]

    def fit(self, before: Item, actions: list[Action]) -> tuple[list[Action], Item]:
        """Apply, and if the item grows past the cap shrink its padding in the same update."""
        after = apply_actions(before, actions)
        excess = item_size(after) - MAX_ITEM_BYTES
        if excess > 0 and self.pad in after:
            keep = len(after[self.pad]["S"]) - excess - 64
            if keep >= 0:
                actions = [*actions, ("SET", (self.pad,), {"S": self.pad_text(keep)})]
                after = apply_actions(before, actions)
        check_item(after)
        return actions, after

    # document paths
    def map_paths(self, item: Item) -> list[Path]:
        """Paths of maps (depth <= 3) a SET can add a child to."""
        out: list[Path] = []

        def walk(path: Path, value: AttributeValue) -> None:
            ((tag, data),) = value.items()
            if len(path) > 3:
                return
            if tag == "M":
                out.append(path)
                for k, v in data.items():
                    walk((*path, k), v)
            elif tag == "L":
                for n, v in enumerate(data):
                    walk((*path, n), v)

        for name, value in item.items():
            if name not in self.protected:
                walk((name,), value)
        return out

    def removable(self, item: Item) -> dict[str, list[Path]]:
        """Top-level name -> paths under it (itself first, then nested, depth <= 4)."""
        out: dict[str, list[Path]] = {}

        def walk(path: Path, value: AttributeValue) -> None:
            out[path[0]].append(path)
            ((tag, data),) = value.items()
            if len(path) >= 4:
                return
            if tag == "M":
                for k, v in data.items():
                    walk((*path, k), v)
            elif tag == "L":
                for n, v in enumerate(data):
                    walk((*path, n), v)

        for name, value in item.items():
            if name not in self.protected:
                out[name] = []
                walk((name,), value)
        return out

    # single-item operations
    def update_request(self, i: int, actions: list[Action]) -> dict[str, Any]:
        expression = _Expression()
        request = {
            "TableName": self.table,
            "Key": _clone(self.key(i)),
            "UpdateExpression": expression.update(actions),
        }
        return expression.attach(request)

    def single(self, op: str, method: str, i: int, request: dict[str, Any], after: Item | None,
               idempotent: bool = True) -> _Plan:
        return _Plan(op, method, request, [i], {i: after}, idempotent=idempotent)

    def put(self, op: str, i: int) -> _Plan:
        item = self.new_item(i, self.state.get(i))
        return self.single(op, "put_item", i, {"TableName": self.table, "Item": item}, item)

    def set_actions(self, i: int) -> list[Action]:
        rng = self.rng
        item = self.state.get(i)
        actions: list[Action] = [("SET", (self.rev,), {"N": str(self.index)})]
        used = {self.rev}
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if item and roll < 0.35:
                maps = [p for p in self.map_paths(item) if p[0] not in used]
                if maps:
                    path = rng.choice(maps)
                    child = rng.choice(self.children)
                    actions.append(("SET", (*path, child), _small_value(rng, self.zoo)))
                    used.add(path[0])
                    continue
            if item and roll < 0.5:
                lists = [n for n, v in item.items() if "L" in v and n not in used | self.protected]
                if lists:
                    name = rng.choice(lists)
                    used.add(name)
                    if item[name]["L"] and rng.random() < 0.5:
                        index = rng.randrange(len(item[name]["L"]))
                        actions.append(("SET", (name, index), _small_value(rng, self.zoo)))
                    else:
                        extra = [_small_value(rng, self.zoo) for _ in range(rng.randint(1, 2))]
                        actions.append(("APPEND", (name,), {"L": extra}))
                    continue
            free = [n for n in self.names if n not in used]
            if free:
                name = rng.choice(free)
                used.add(name)
                actions.append(("SET", (name,), self.catalog[name][1](rng)))
        return actions

    def update(self, op: str, i: int, actions: list[Action]) -> _Plan:
        actions, after = self.fit(self.state.get(i) or _clone(self.key(i)), actions)
        idempotent = not any(kind in ("APPEND",) or (kind == "ADD" and "N" in value)
                             for kind, _, value in actions)
        return self.single(op, "update_item", i, self.update_request(i, actions), after, idempotent)

    def plan_put_new(self) -> _Plan | None:
        if len(self.state) >= self.w.keys:
            return None
        i = self.pick(self.missing)
        return None if i is None else self.put("put_new", i)

    def plan_put_overwrite(self) -> _Plan | None:
        if not self.state:
            return None
        i = self.pick(self.exists, existing=True)
        return None if i is None else self.put("put_overwrite", i)

    def plan_update_set(self) -> _Plan:
        i = self.draw()
        return self.update("update_set", i, self.set_actions(i))

    def plan_update_remove(self) -> _Plan | None:
        if not self.state:
            return None
        i = self.pick(
            lambda j: self.exists(j) and bool(self.removable(self.state[j])), existing=True
        )
        if i is None:
            return None
        groups = self.removable(self.state[i])
        names = self.rng.sample(list(groups), min(len(groups), self.rng.randint(1, 3)))
        actions: list[Action] = []
        for name in names:
            paths = groups[name]
            nested = paths[1:]
            path = self.rng.choice(nested) if nested and self.rng.random() < 0.6 else paths[0]
            actions.append(("REMOVE", path, None))
        return self.update("update_remove", i, actions)

    def plan_update_add_number(self) -> _Plan | None:
        if not self.counters:
            return None
        i = self.draw()
        name = self.rng.choice(self.counters)
        if self.rng.random() < 0.2:
            delta = self.rng.choice(("0.5", "-1.25", "19.99", "0.01"))
        else:
            delta = str(self.rng.choice([d for d in range(-50, 51) if d]))
        return self.update("update_add_number", i, [("ADD", (name,), {"N": delta})])

    def new_elements(self, tag: str, existing: list[Any]) -> list[Any]:
        rng = self.rng
        makers: dict[str, Callable[[], Any]] = {
            "SS": lambda: _ss_element(rng, self.zoo),
            "NS": lambda: _ns_element(rng),
            "BS": lambda: _bytes(rng, 1, 8),
        }
        marks = [_element_key(tag, e) for e in existing]
        out: list[Any] = []
        for _ in range(40):
            element = makers[tag]()
            mark = _element_key(tag, element)
            if mark not in marks:
                out.append(element)
                marks.append(mark)
            if len(out) >= 3 or (out and rng.random() < 0.5):
                break
        return out

    def plan_update_add_set(self) -> _Plan | None:
        if not self.sets:
            return None
        i = self.draw()
        name = self.rng.choice(self.sets)
        item = self.state.get(i, {})
        tag = _SET_TAGS[name]
        existing = item[name][tag] if name in item else []
        elements = self.new_elements(tag, existing)
        if not elements:
            return None
        return self.update("update_add_set", i, [("ADD", (name,), {tag: elements})])

    def plan_update_delete_set(self) -> _Plan | None:
        if not self.state or not self.sets:
            return None
        i = self.pick(
            lambda j: self.exists(j) and any(n in self.state[j] for n in self.sets), existing=True
        )
        if i is None:
            return None
        item = self.state[i]
        name = self.rng.choice([n for n in self.sets if n in item])
        ((tag, elements),) = item[name].items()
        if len(elements) == 1 or self.rng.random() < 0.2:
            chosen = list(elements)  # the set empties: DynamoDB removes the attribute
        else:
            chosen = self.rng.sample(list(elements), self.rng.randint(1, len(elements) - 1))
        return self.update("update_delete_set", i, [("DELETE", (name,), {tag: chosen})])

    def plan_delete(self) -> _Plan | None:
        if not self.state:
            return None
        i = self.pick(self.exists, existing=True)
        if i is None:
            return None
        request = {"TableName": self.table, "Key": _clone(self.key(i))}
        return self.single("delete", "delete_item", i, request, None)

    def plan_conditional_fail(self) -> _Plan:
        variants = ["update_if_exists"] if len(self.state) < self.w.keys else []
        if self.state:
            variants += ["put_if_absent", "delete_if_rev", "update_if_rev", "transaction"]
        variant = self.rng.choice(variants)
        if variant == "transaction":
            cancelled = self.plan_transaction(cancelled=True)
            if len(cancelled.keys) >= 2:
                return cancelled
            variant = "put_if_absent"  # a transaction needs a second key of the same writer
        pk = self.spec.partition_key[0]
        expression = _Expression()
        if variant == "update_if_exists":
            i = self.pick(self.missing)
            assert i is not None
            request = {
                "TableName": self.table,
                "Key": _clone(self.key(i)),
                "UpdateExpression": expression.update(
                    [("SET", (self.rev,), {"N": str(self.index)})]
                ),
                "ConditionExpression": f"attribute_exists({expression.name(pk)})",
            }
            method = "update_item"
        elif variant == "put_if_absent":
            i = self.pick(self.exists, existing=True)
            assert i is not None
            request = {
                "TableName": self.table,
                "Item": self.new_item(i, self.state[i]),
                "ConditionExpression": f"attribute_not_exists({expression.name(pk)})",
            }
            method = "put_item"
        else:  # delete_if_rev, update_if_rev
            i = self.pick(self.exists, existing=True)
            assert i is not None
            request = {"TableName": self.table, "Key": _clone(self.key(i))}
            if variant == "update_if_rev":
                request["UpdateExpression"] = expression.update([("REMOVE", (self.rev,), None)])
                method = "update_item"
            else:
                method = "delete_item"
            # rev is never negative: the comparison is false (and false without the attribute)
            request["ConditionExpression"] = (
                f"{expression.name(self.rev)} = {expression.value({'N': '-1'})}"
            )
        plan = _Plan("conditional_fail", method, expression.attach(request), [i], {},
                     expect_failure=True)
        return plan

    # multi-item operations
    def group(self, wanted: int, first_accept: Callable[[int], bool] | None = None) -> list[int]:
        first = self.pick(first_accept) if first_accept else self.draw()
        if first is None:
            return []
        shard = self.shard(first)
        chosen = [first]
        for _ in range(wanted * 4):
            if len(chosen) >= wanted:
                break
            j = self.draw()
            if j not in chosen and self.shard(j) == shard:
                chosen.append(j)
        return chosen

    def plan_batch_write(self) -> _Plan:
        keys = self.group(self.rng.randint(2, BATCH_MAX))
        requests: list[dict[str, Any]] = []
        after: dict[int, Item | None] = {}
        for i in keys:
            if self.exists(i) and self.rng.random() < 0.35:
                requests.append({"DeleteRequest": {"Key": _clone(self.key(i))}})
                after[i] = None
            else:
                item = self.new_item(i, self.state.get(i))
                requests.append({"PutRequest": {"Item": item}})
                after[i] = item
        request = {"RequestItems": {self.table: requests}}
        return _Plan("batch_write", "batch_write_item", request, keys, after)

    def plan_transaction(self, cancelled: bool = False) -> _Plan:
        rng = self.rng
        keys = self.group(rng.randint(2, TRANSACTION_MAX), self.exists if cancelled else None)
        pk = self.spec.partition_key[0]
        items: list[dict[str, Any]] = []
        after: dict[int, Item | None] = {}
        budget = 0
        for position, i in enumerate(keys):
            before = self.state.get(i)
            before_size = item_size(before) if before else 0
            if position and budget + max(self.target, before_size) + 2048 > TRANSACTION_BYTES:
                keys = keys[:position]  # TransactWriteItems' aggregate size limit
                break
            roll = rng.random()
            expression = _Expression()
            if cancelled and position == 0:
                check = f"attribute_not_exists({expression.name(pk)})"
                items.append({"ConditionCheck": expression.attach(
                    {"TableName": self.table, "Key": _clone(self.key(i)), "ConditionExpression": check}
                )})
            elif before is not None and roll < 0.15 and not cancelled:
                check = f"attribute_exists({expression.name(pk)})"
                items.append({"ConditionCheck": expression.attach(
                    {"TableName": self.table, "Key": _clone(self.key(i)), "ConditionExpression": check}
                )})
            elif before is not None and roll < 0.35:
                items.append({"Delete": {"TableName": self.table, "Key": _clone(self.key(i))}})
                after[i] = None
                budget += before_size
            elif roll < 0.7:
                item = self.new_item(i, before)
                items.append({"Put": {"TableName": self.table, "Item": item}})
                after[i] = item
                budget += max(before_size, item_size(item))
            else:
                actions, new = self.fit(before or _clone(self.key(i)), self.set_actions(i))
                items.append({"Update": self.update_request(i, actions)})
                after[i] = new
                budget += max(before_size, item_size(new))
        if not after and not cancelled:
            # all condition checks: make the last one a write
            i = keys[-1]
            item = self.new_item(i, self.state.get(i))
            items[-1] = {"Put": {"TableName": self.table, "Item": item}}
            after[i] = item
        request = {"TransactItems": items}
        if cancelled:
            return _Plan(
                "conditional_fail", "transact_write_items", request, keys, {}, expect_failure=True
            )
        # idempotent: run_workload sends a ClientRequestToken, the same for every retry
        return _Plan("transaction", "transact_write_items", request, keys, after)

    # the loop
    def choose(self) -> str:
        at = bisect.bisect_right(self.mix_cum, self.rng.random() * self.mix_cum[-1])
        return self.mix_names[min(at, len(self.mix_names) - 1)]

    def plan_one(self, kind: str) -> _Plan:
        tried: list[str] = []
        while True:
            plan: _Plan | None = getattr(self, f"plan_{kind}")()
            if plan is not None:
                return plan
            tried.append(kind)
            kind = _FALLBACK.get(kind, "update_set")
            if kind in tried:
                kind = "update_set"

    def __iter__(self) -> Iterator[Operation]:
        for index in range(self.w.operations):
            self.index = index
            plan = self.plan_one(self.choose())
            writes: list[KeyTuple] = []
            for i, new in plan.after.items():
                if new != self.state.get(i):
                    writes.append(self.ktuple(i))
                if new is None:
                    self.state.pop(i, None)
                else:
                    self.state[i] = new
            yield Operation(
                index=index,
                op=plan.op,
                method=plan.method,
                request=plan.request,
                keys=tuple(self.ktuple(i) for i in plan.keys),
                writes=tuple(writes),
                writer=self.shard(plan.keys[0]) if plan.keys else 0,
                expect_condition_failure=plan.expect_failure,
                idempotent=plan.idempotent,
            )

    def final_state(self) -> dict[KeyTuple, Item]:
        return {self.ktuple(i): item for i, item in sorted(self.state.items())}


# when a kind is impossible (no key fits), the closest possible one
_FALLBACK = {
    "put_new": "put_overwrite",
    "put_overwrite": "put_new",
    "update_remove": "update_set",
    "update_delete_set": "update_add_set",
    "update_add_set": "update_set",
    "update_add_number": "update_set",
    "delete": "put_new",
}


def _fresh(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = f"_{name}"
    return name


def iter_operations(spec: TableSpec, workload: WorkloadSpec) -> Iterator[Operation]:
    """The planned operations one by one (what :func:`plan_operations` lists)."""
    return iter(_Planner(spec, workload))


def plan_operations(spec: TableSpec, workload: WorkloadSpec) -> list[Operation]:
    """Every operation of the workload, in order. Pure: no I/O, same seed -> same list."""
    return list(iter_operations(spec, workload))


def expected_state(spec: TableSpec, workload: WorkloadSpec) -> dict[KeyTuple, Item]:
    """The table after the workload, starting from an empty table: key tuple -> item."""
    planner = _Planner(spec, workload)
    for _ in planner:
        pass
    return planner.final_state()


# -- execution --------------------------------------------------------------------------------
class _ConditionFailed(Exception):
    pass


class _RateLimiter:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class _SharedExclusive:
    """A readers-writer lock: many shared holders, or one exclusive (which waiting blocks newcomers)."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.shared = 0
        self.exclusive = False
        self.waiting = 0

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self.condition:
            if exclusive:
                self.waiting += 1
                while self.exclusive or self.shared:
                    self.condition.wait()
                self.waiting -= 1
                self.exclusive = True
            else:
                while self.exclusive or self.waiting:
                    self.condition.wait()
                self.shared += 1
        try:
            yield
        finally:
            with self.condition:
                if exclusive:
                    self.exclusive = False
                else:
                    self.shared -= 1
                self.condition.notify_all()


def _cancellation_codes(error: Any) -> list[str]:
    response = getattr(error, "response", {}) or {}
    reasons = response.get("CancellationReasons") or []
    codes = [str(r.get("Code")) for r in reasons if isinstance(r, Mapping) and r.get("Code")]
    if not codes:
        message = str(response.get("Error", {}).get("Message", ""))
        match = re.search(r"\[(.*)\]", message)
        if match:
            codes = [c.strip() for c in match.group(1).split(",")]
    return codes


class _Runner:
    def __init__(self, client: Any, spec: TableSpec, workload: WorkloadSpec,
                 progress: Callable[[int, int], Any] | None) -> None:
        self.client = client
        self.spec = spec
        self.workload = workload
        self.progress = progress
        self.lock = threading.Lock()
        self.limiter = _RateLimiter(workload.rate_per_s)
        self.jitter = random.Random()  # backoff only: does not touch the plan
        # Transactions run alone when there are several writers. Writers own disjoint keys, so on
        # DynamoDB this costs a little throughput and nothing else; moto snapshots the whole table
        # for a transaction and restores the snapshot when it is cancelled, losing (or racing
        # with) other threads' writes.
        self.transactions = _SharedExclusive()
        self.result = WorkloadResult(total=workload.operations)

    # bookkeeping
    def error(self, message: str) -> None:
        with self.lock:
            self.result.error_count += 1
            if len(self.result.errors) < MAX_ERRORS_KEPT:
                self.result.errors.append(message)

    def wrote(self, keys: Sequence[KeyTuple], key_maps: Mapping[KeyTuple, Item]) -> None:
        now = time.time()
        with self.lock:
            for key in keys:
                self.result.last_write[key] = now
                self.result.writes.append((now, key_maps[key]))

    def finished(self, op: Operation, *, counted: bool) -> None:
        with self.lock:
            if counted:
                self.result.counts[op.op] = self.result.counts.get(op.op, 0) + 1
            self.done += 1
            done = self.done
            if self.progress is not None:
                try:
                    self.progress(done, self.result.total)
                except Exception as error:  # a broken progress bar must not stop the writes
                    self.result.error_count += 1
                    if len(self.result.errors) < MAX_ERRORS_KEPT:
                        self.result.errors.append(f"progress callback failed: {error!r}")
                    self.progress = None

    def backoff(self, attempt: int) -> None:
        with self.lock:
            self.result.retries += 1
            delay = self.jitter.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))
        time.sleep(delay)

    # calls
    def call(self, method: str, request: dict[str, Any], idempotent: bool) -> Any:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        function = getattr(self.client, method)
        for attempt in range(MAX_ATTEMPTS):
            last = attempt == MAX_ATTEMPTS - 1
            try:
                return function(**request)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code == "ConditionalCheckFailedException":
                    raise _ConditionFailed(code) from None
                if code == "TransactionCanceledException":
                    reasons = _cancellation_codes(error)
                    if "ConditionalCheckFailed" in reasons:
                        raise _ConditionFailed(", ".join(reasons)) from None
                    retry = any(r in RETRYABLE_CANCELLATION for r in reasons)
                elif code in THROTTLING_CODES:
                    retry = True
                elif code in AMBIGUOUS_CODES or status >= 500:
                    retry = idempotent
                else:
                    retry = False
                if not retry or last:
                    raise
            except (ConnectionClosedError, ReadTimeoutError, RuntimeError):
                # RuntimeError: moto in-process is not thread-safe (a transaction copies the table
                # while another writer changes it); nothing was written
                if not idempotent or last:
                    raise
            except (EndpointConnectionError, ConnectTimeoutError):
                if last:
                    raise
            self.backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(self, op: Operation) -> None:
        self.limiter.wait()
        counted = False
        alone = op.method == "transact_write_items"
        try:
            with self.transactions.hold(exclusive=alone):
                self.send(op)
            counted = True
        except Exception as error:
            self.error(f"operation {op.index} ({op.op}, {op.method}): {type(error).__name__}: {error}")
        finally:
            self.finished(op, counted=counted)

    def send(self, op: Operation) -> None:
        if op.method == "batch_write_item":
            self.batch(op)
            return
        request = op.request
        if op.method == "transact_write_items":
            # unique per run: a token reused within 10 minutes would make AWS skip the write
            request = {**request, "ClientRequestToken": uuid.uuid4().hex}
        try:
            self.call(op.method, request, op.idempotent)
        except _ConditionFailed as failure:
            if not op.expect_condition_failure:
                raise RuntimeError(f"condition failed unexpectedly: {failure}") from None
            with self.lock:
                self.result.failed_conditional += 1
        else:
            if op.expect_condition_failure:
                raise RuntimeError("a write meant to fail its condition succeeded")
            self.wrote(op.writes, self.key_maps(op))

    def key_maps(self, op: Operation) -> dict[KeyTuple, Item]:
        names = [self.spec.partition_key] + ([self.spec.sort_key] if self.spec.sort_key else [])
        return {k: {n: {t: v} for (n, t), v in zip(names, k, strict=True)} for k in op.keys}

    def batch(self, op: Operation) -> None:
        pending = list(op.request["RequestItems"][self.spec.name])
        changing = set(op.writes)
        key_maps = self.key_maps(op)
        for attempt in range(BATCH_MAX_ATTEMPTS):
            response = self.call(
                "batch_write_item", {"RequestItems": {self.spec.name: pending}}, True
            )
            left = list((response.get("UnprocessedItems") or {}).get(self.spec.name, []))
            left_keys = {self.request_key(r) for r in left}
            sent = [self.request_key(r) for r in pending]
            self.wrote([k for k in sent if k not in left_keys and k in changing], key_maps)
            if not left:
                return
            pending = left
            if attempt < BATCH_MAX_ATTEMPTS - 1:
                self.backoff(attempt)
        raise RuntimeError(f"{len(pending)} items still unprocessed after {BATCH_MAX_ATTEMPTS} tries")

    def request_key(self, request: Mapping[str, Any]) -> KeyTuple:
        if "PutRequest" in request:
            return key_tuple(self.spec, request["PutRequest"]["Item"])
        return key_tuple(self.spec, request["DeleteRequest"]["Key"])

    def run(self) -> WorkloadResult:
        self.done = 0
        self.result.started_at = time.time()
        operations = iter_operations(self.spec, self.workload)
        if self.workload.writers == 1:
            for op in operations:
                self.execute(op)
        else:
            queues: list[queue.Queue[Operation | None]] = [
                queue.Queue(maxsize=256) for _ in range(self.workload.writers)
            ]

            def work(lane: queue.Queue[Operation | None]) -> None:
                while True:
                    op = lane.get()
                    if op is None:
                        return
                    self.execute(op)

            threads = [
                threading.Thread(target=work, args=(q,), name=f"workload-writer-{n}", daemon=True)
                for n, q in enumerate(queues)
            ]
            for thread in threads:
                thread.start()
            try:
                for op in operations:
                    queues[op.writer].put(op)
            finally:
                for lane in queues:
                    lane.put(None)
                for thread in threads:
                    thread.join()
        self.result.finished_at = time.time()
        self.result.writes.sort(key=lambda entry: entry[0])
        return self.result


def run_workload(
    client: Any,
    spec: TableSpec,
    workload: WorkloadSpec,
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> WorkloadResult:
    """Write the workload to ``spec``'s table (created, empty) with a boto3 ``dynamodb`` client.

    ``progress(done, total)`` is called after every operation (from one thread at a time).
    Failures do not stop the run: they are counted in the result's ``errors``.
    """
    return _Runner(client, spec, workload, progress).run()
