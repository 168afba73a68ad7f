"""One lane: a handler under test, fed by the event-source-mapping emulation, writing into a target
collection, checked against the table.

The dev kit's central idea, written once. A :class:`Lane` owns

* the handler under test (``"replicator"``, ``"baseline"``, ``"module:function"`` or a callable
  ``(event, context)``), built with the lane's settings and item reader (:mod:`harness.handlers`);
* the expected documents' planner, built from the same settings exactly as the Replicator builds
  it (:func:`replicator.expected.planner_for`: transforms, ``id_mapping``, number mode, key schema);
* the item reader a KEYS_ONLY or OLD_IMAGE stream needs (consistent reads of the source table,
  :func:`item_reader_for`, as the deployed replicator has it; or :class:`ItemsReader` over the
  final items of a capture);
* the event source mapping's settings (:class:`~harness.esm.config.EsmConfig`, :func:`esm_config`)
  and the mapping itself (:class:`~harness.esm.mapping.EventSourceMapping`);
* its stream positions (:meth:`Lane.sync` resumes after the last record read);
* the convergence diff (:meth:`Lane.diff`, :mod:`harness.convergence`).

Built on it: the scenario runner (N lanes on one stream and a workload, :mod:`harness.runner`),
replay of a capture (:mod:`harness.captures.replay`), chaos's faulty drive
(:mod:`harness.chaos.drive`) and the pytest plugin's ``Replication`` (:mod:`harness.replication`).

A *lane* here is a handler under test; the emulation's per-shard ParallelizationFactor slot is a
:class:`~harness.esm.shards.ShardLane`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import SourceBackend, Table, TableSpec
from harness.convergence import Diff, DocumentDifference, check
from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from harness.esm.report import DriverReport
from harness.handlers import Handler, make_handler
from harness.lag import DeliveryTimes, key_fingerprint
from harness.mongodb_only import PREFIX as MONGODB_ONLY_PREFIX
from harness.mongodb_only import MongoOnlyWriter
from replicator.diff import FieldDifference
from replicator.expected import planner_for
from replicator.plan import Planner
from replicator.poller.streams import StreamReader
from replicator.readback import DynamoDBItemReader, ItemReader
from replicator.settings import Settings

#: A handler as Lambda calls it: ``handler(event, context)``.
LambdaHandler = Callable[[dict[str, Any], Any], Any]
#: A built-in or dotted handler name, or a Lambda handler.
HandlerSpec = str | LambdaHandler
#: What :func:`esm_config` reads.
EsmSource = EsmConfig | Mapping[str, Any] | str | Path | None

#: the stream view types whose records carry the new image (no read-back needed)
IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


def esm_config(esm: EsmSource) -> EsmConfig:
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


def lane_settings(spec: TableSpec, settings: Settings | Mapping[str, Any] | None) -> Settings:
    """The settings with the table's key schema (a mapping is taken as Settings' field names; a
    list where Settings holds a tuple is made one)."""
    if settings is None:
        settings = Settings()
    elif isinstance(settings, Mapping):
        fields = dict(settings)
        for name in ("transforms", "shard_key", "key_schema"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        settings = Settings(**fields)
    if settings.key_schema is None:
        settings = dataclasses.replace(settings, key_schema=spec.key_schema)
    return settings


def item_reader_for(source: SourceBackend, spec: TableSpec) -> ItemReader | None:
    """The item reader a stream of ``spec``'s view type needs: None when its records carry the new
    image, else consistent ``BatchGetItem`` reads of the source table (what the deployed replicator
    does for KEYS_ONLY and OLD_IMAGE streams; docs/configuration.md)."""
    if spec.stream_view_type in IMAGE_VIEWS:
        return None
    return DynamoDBItemReader(source.dynamodb(), spec.name)


class ItemsReader:
    """An item reader over items already read: a capture's final items, or a scan taken after the
    workload ended (chaos). For a KEYS_ONLY / OLD_IMAGE stream replayed after the fact, where
    the final item is what a consistent read returns at delivery time. Keys match whatever form
    their binary values take (bytes, or base64 text as in the Lambda event)."""

    def __init__(self, items: Iterable[Mapping[str, Any]], key_schema: Sequence[str]) -> None:
        self._by_key = {key_fingerprint({name: item[name] for name in key_schema}): dict(item)
                        for item in items}

    def read(self, keys: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [self._by_key.get(key_fingerprint(key)) for key in keys]


def scan_items(client: Any, table_name: str) -> list[dict[str, Any]]:
    """A strongly consistent, paginated scan of a table (the convergence check's source)."""
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        page = client.scan(**request)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Lane:
    """A handler under test between a stream and a target collection.

    ``handler``: a :data:`HandlerSpec`; a callable ``(event, context)`` writes wherever it writes
    (give it :attr:`collection`), a name is built with ``settings`` and ``item_reader`` writing to
    ``writes_to`` (default ``collection``; the runner passes a timed wrapper of it).
    ``settings``: built into the expected documents' planner exactly as the Replicator builds it;
    give the table's key schema (see :func:`lane_settings`). ``esm``: see :func:`esm_config`.
    ``stream_arn``, ``region``, ``partition_key`` (ParallelizationFactor routing) and the
    remaining keywords go to :class:`~harness.esm.mapping.EventSourceMapping`; ``mapping_type``
    replaces it (chaos's planted ``children_first``). ``deliveries`` collects each delivered
    record's completion time (the runner's lag). ``name`` names the lane in reports. Raises
    ConfigurationError when a transform or ``id_mapping`` cannot be loaded.
    """

    def __init__(
        self,
        handler: HandlerSpec,
        collection: Any,
        settings: Settings,
        *,
        stream_arn: str,
        partition_key: str | None,
        esm: EsmSource = None,
        item_reader: ItemReader | None = None,
        writes_to: Any = None,
        region: str = "us-east-1",
        mapping_type: type[EventSourceMapping] = EventSourceMapping,
        name: str | None = None,
        deliveries: DeliveryTimes | None = None,
        **mapping_options: Any,
    ) -> None:
        self.collection = collection
        self.settings = settings
        self.planner: Planner = planner_for(settings)
        self.item_reader = item_reader
        self.esm = esm_config(esm)
        self.stream_arn = stream_arn
        self.handler_name: str
        if callable(handler):
            user = handler
            function: Handler = lambda event: user(event, None)  # noqa: E731
            self.handler_name = name or str(getattr(handler, "__qualname__", "handler"))
        else:
            target = collection if writes_to is None else writes_to
            function = make_handler(handler, target, settings, item_reader=item_reader)
            self.handler_name = name or handler
        #: another MongoDB application writing to the collection (add_mongodb_only_writer)
        self.mongodb_only_writer: MongoOnlyWriter | None = None
        #: each delivered record's completion time by key (lag), when the caller measures it
        self.deliveries = deliveries
        if deliveries is not None:
            mapping_options["on_complete"] = _both(deliveries.on_complete,
                                                   mapping_options.get("on_complete"))
        self.mapping = mapping_type(
            function, self.esm, stream_arn=stream_arn, region=region,
            partition_key=partition_key, **mapping_options,
        )
        #: shard id -> the last sequence number read (where :meth:`sync` resumes)
        self.positions: dict[str, str] = {}
        #: shards read to their end
        self.finished: list[str] = []
        self.records_read = 0

    @classmethod
    def for_table(
        cls,
        source: SourceBackend,
        table: Table,
        collection: Any,
        *,
        handler: HandlerSpec = "replicator",
        settings: Settings | Mapping[str, Any] | None = None,
        esm: EsmSource = None,
        **options: Any,
    ) -> Lane:
        """A lane on ``table``'s stream in ``source``: its key schema in the settings, its
        partition key for routing, and the item reader its stream view type needs."""
        return cls(
            handler, collection, lane_settings(table.spec, settings),
            stream_arn=table.stream_arn, partition_key=table.spec.partition_key[0], esm=esm,
            item_reader=item_reader_for(source, table.spec),
            region=getattr(source, "region", "us-east-1"), **options,
        )

    # -- delivering ------------------------------------------------------------------------------
    def wrap(self, layer: Callable[[Handler], Handler]) -> None:
        """Put ``layer`` around the function the mapping invokes (chaos's per-delivery check)."""
        self.mapping.handler = layer(self.mapping.handler)

    def feed(self, shard_id: str, records: Sequence[Mapping[str, Any]], *,
             parent_shard_id: str | None = None) -> int:
        """Hand the mapping records read from a shard (in order); returns how many."""
        return self.mapping.feed(shard_id, records, parent_shard_id=parent_shard_id)

    def pump(self) -> int:
        """Invoke the batches that are ready now (see EventSourceMapping.pump)."""
        return self.mapping.pump()

    def drain(self) -> DriverReport:
        """Deliver everything fed, retries included; the mapping's report."""
        return self.mapping.drain()

    def sync(self, streams: Any) -> int:
        """Read every record ``streams`` (a boto3 ``dynamodbstreams`` client) holds after this
        lane's positions, deliver them and drain; returns how many were new.

        A fresh reader per call, resumed after the last record read: a reader's iterator may be
        pinned to a table object moto replaces on a failed conditional write (see
        StreamReader._read_shard), and a new iterator from the last sequence number loses nothing.
        """
        reader = StreamReader(streams, self.stream_arn, positions=self.positions,
                              finished=self.finished)
        fresh = reader.drain(idle_polls=2)
        count = 0
        for shard_id, records in fresh.items():
            count += self.feed(shard_id, records, parent_shard_id=parent_of(reader, shard_id))
        self.positions.update({k: v for k, v in reader.positions().items() if v is not None})
        self.finished = reader.exhausted()
        self.drain()
        self.records_read += count
        return count

    @property
    def report(self) -> DriverReport:
        """What the event source mapping did: invocations, retries, discards, on-failure records."""
        return self.mapping.report

    def close(self) -> None:
        self.mapping.close()

    # -- checking --------------------------------------------------------------------------------
    def add_mongodb_only_writer(self) -> MongoOnlyWriter:
        """Another MongoDB application on this lane's collection (write_mode="merge"): it writes
        after each completed batch (give the mapping ``on_complete=lane.after_batch``), and
        :meth:`diff` then ignores its fields only and reports each one lost as a difference."""
        self.mongodb_only_writer = MongoOnlyWriter(self.collection, self.planner)
        return self.mongodb_only_writer

    def after_batch(self, at: float, records: Sequence[Mapping[str, Any]]) -> None:
        """An ``on_complete`` for the mapping: the MongoDB-only writer's turn, if there is one."""
        if self.mongodb_only_writer is not None:
            self.mongodb_only_writer.after_batch(at, records)

    def diff(self, items: Iterable[Mapping[str, Any]]) -> Diff:
        """The table's ``items`` (a consistent scan, or a capture's final items) against the
        collection now, expected documents built with the lane's planner (its write mode); with
        a MongoDB-only writer, strictly but for its fields, and each field it lost is a
        difference (harness/mongodb_only.py)."""
        writer = self.mongodb_only_writer
        if writer is None:
            return check(items, self.collection, self.planner)
        diff = check(items, self.collection, self.planner, mongodb_only=MONGODB_ONLY_PREFIX)
        diff.changed.extend(
            DocumentDifference(document_id, (FieldDifference(
                f"{MONGODB_ONLY_PREFIX}*", "another MongoDB application's fields", what),))
            for document_id, what in writer.finish())
        return diff


def _both(first: Callable[[float, Any], None], then: Callable[[float, Any], None] | None
          ) -> Callable[[float, Any], None]:
    """An ``on_complete`` that calls ``first``, then ``then`` (when given)."""
    if then is None:
        return first

    def both(at: float, records: Any) -> None:
        first(at, records)
        then(at, records)

    return both


def parent_of(reader: StreamReader, shard_id: str) -> str | None:
    """The parent shard of a shard the reader listed (None for a root or an unknown shard): the
    ESM emulation holds a child's records until its parent's are delivered, as Lambda does."""
    state = reader.state.get(shard_id)
    return state.parent_id if state is not None else None
