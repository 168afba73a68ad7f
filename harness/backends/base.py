"""What the runner needs from a source (DynamoDB) and a target (MongoDB), and the registry.

A backend is one small class in its own module, registered by name; a scenario body runs
unchanged against any of them (as moto's decorator runs one test against the mock or real AWS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable


class BackendUnavailable(RuntimeError):
    """A backend cannot start here; the message says what to install or start."""


@dataclass(frozen=True)
class TableSpec:
    """A table to create: name, key schema (partition first), attribute types, stream view."""

    name: str
    partition_key: tuple[str, str]  # (name, "S" | "N" | "B")
    sort_key: tuple[str, str] | None = None
    stream_view_type: str = "NEW_AND_OLD_IMAGES"

    @property
    def key_schema(self) -> tuple[str, ...]:
        return (self.partition_key[0],) + ((self.sort_key[0],) if self.sort_key else ())

    def create_table_request(self) -> dict[str, Any]:
        """The CreateTable request (the same shape as a fixture's ``table.json``)."""
        keys = [self.partition_key] + ([self.sort_key] if self.sort_key else [])
        return {
            "TableName": self.name,
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in keys],
            "KeySchema": [
                {"AttributeName": n, "KeyType": kind}
                for (n, _), kind in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
            "BillingMode": "PAY_PER_REQUEST",
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": self.stream_view_type},
        }

    @classmethod
    def from_create_table_request(cls, request: Mapping[str, Any]) -> TableSpec:
        types = {a["AttributeName"]: a["AttributeType"] for a in request["AttributeDefinitions"]}
        by_kind = {k["KeyType"]: k["AttributeName"] for k in request["KeySchema"]}
        partition = by_kind["HASH"]
        sort = by_kind.get("RANGE")
        return cls(
            name=request["TableName"],
            partition_key=(partition, types[partition]),
            sort_key=(sort, types[sort]) if sort else None,
            stream_view_type=request.get("StreamSpecification", {}).get(
                "StreamViewType", "NEW_AND_OLD_IMAGES"
            ),
        )


@dataclass
class Table:
    """A created table: its spec and stream ARN."""

    spec: TableSpec
    stream_arn: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SourceBackend(Protocol):
    """A DynamoDB (emulator or real) with streams. ``start``/``stop`` bracket its life."""

    name: str
    #: the region its clients and stream ARNs name (a Lambda event's ``awsRegion``)
    region: str
    #: whether a cancelled TransactWriteItems leaves no trace in the stream (DynamoDB, DynamoDB
    #: Local); moto applies its writes, emits them and rolls them back, so the runner reads such a
    #: source's stream only after the workload (runner.py)
    atomic_transactions: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def dynamodb(self) -> Any:
        """A boto3 ``dynamodb`` client bound to this source."""
        ...

    def streams(self) -> Any:
        """A boto3 ``dynamodbstreams`` client bound to this source."""
        ...

    def create_table(self, spec: TableSpec) -> Table: ...

    def delete_table(self, table: Table) -> None: ...


@runtime_checkable
class TargetBackend(Protocol):
    """A MongoDB (mock, URI or container). ``describe()`` never shows credentials."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def collection(self, database: str, name: str) -> Any:
        """A pymongo-compatible collection."""
        ...

    def describe(self) -> str: ...


#: The embedded target ``harness run`` / ``harness replay`` use when none is named: a wire-protocol
#: server driven by the real pymongo client (mongoeco_target.py). ``mongomock`` stays in-process.
DEFAULT_TARGET = "mongoeco"
#: The most records the harness hands a handler at once, hence the largest bulk write it causes:
#: Lambda's batches are what production sends, and mongoeco drops a request busy for ~10 s.
MAX_BATCH_RECORDS = 1000

B = TypeVar("B")
SOURCES: dict[str, Callable[..., SourceBackend]] = {}
TARGETS: dict[str, Callable[..., TargetBackend]] = {}


def register_source(name: str) -> Callable[[type[B]], type[B]]:
    def decorate(cls: type[B]) -> type[B]:
        SOURCES[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def register_target(name: str) -> Callable[[type[B]], type[B]]:
    def decorate(cls: type[B]) -> type[B]:
        TARGETS[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def load_sources() -> None:
    # Importing the modules registers them; imports are light (heavy ones happen in start()).
    from harness.backends import sources  # noqa: F401


def load_targets() -> None:
    from harness.backends import targets  # noqa: F401


def load_all() -> None:
    load_sources()
    load_targets()


def source_backend(name: str, **options: Any) -> SourceBackend:
    load_sources()
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name](**options)


def target_backend(name: str, **options: Any) -> TargetBackend:
    load_targets()
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    return TARGETS[name](**options)


class Lifecycle(Protocol):
    """What :func:`started` needs of a backend (sources and targets alike)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


L = TypeVar("L", bound=Lifecycle)


class Started(Generic[L]):
    """``with started(backend) as b:`` starts it and stops it even on failure."""

    def __init__(self, backend: L) -> None:
        self.backend = backend

    def __enter__(self) -> L:
        try:
            self.backend.start()
        except BaseException:
            self.backend.stop()
            raise
        return self.backend

    def __exit__(self, *exc: object) -> None:
        self.backend.stop()


def started(backend: L) -> Started[L]:
    return Started(backend)


def iter_registered() -> Iterator[tuple[str, str]]:
    load_all()
    for name in sorted(SOURCES):
        yield "source", name
    for name in sorted(TARGETS):
        yield "target", name
