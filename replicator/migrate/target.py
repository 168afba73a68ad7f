"""The target prepared from the table: DescribeTable -> the collection's indexes and shard key.

Two halves. :func:`plan_target` is pure: DescribeTable's ``Table`` and DescribeTimeToLive's
``TimeToLiveDescription`` (and the replicator's Settings) -> a :class:`TargetPlan`. :func:`prepare`
applies a plan to a collection, idempotently, or prints it (``dry_run``); :func:`prepare_table`
does both for one table (``replicator prepare``, ``replicator sync`` before its copy, and the
migration file's tables).

What a DynamoDB index becomes (docs/migration.md, "The target's indexes and shard key"):

* every GSI and LSI becomes one MongoDB index on its key attributes, in key order (an LSI:
  the table's partition key, then its own sort key), under the DynamoDB index's name. The
  replicator writes every attribute as a top-level field of the same name (the table key's
  attributes included, beside ``_id``), so the fields are the attribute names -- unless a
  transform removes or renames one: the plan runs the Replicator's own planner on a sample item
  and reports such an index as skipped, never indexes a field that is not there;
* **partial**: ``partialFilterExpression`` ``{attr: {$exists: true}}`` for each index key
  attribute that is not a table key attribute (those are in every item). DynamoDB indexes are
  sparse: an item without an index key attribute is not in the index (Developer Guide, "Improving
  data access with secondary indexes", sparse indexes); MongoDB only uses a partial index for a
  query whose predicate implies the filter, which a query of an index key by value does;
* **never unique**: DynamoDB guarantees no uniqueness in a GSI ("In a global secondary index,
  key values do not need to be unique") nor in an LSI (partition + LSI sort key values may repeat:
  only the table key is unique). The only unique index is ``_id``'s;
* the **projection** does not matter: the document is the whole item whatever the index projects
  (KEYS_ONLY, INCLUDE, ALL), so two indexes that differ only by projection are one MongoDB index;
* the **TTL attribute** is reported, not indexed: DynamoDB's TTL attribute is a Number of epoch
  seconds, stored as a number, while a MongoDB TTL index expires only documents whose field is a
  BSON date (MongoDB manual, "TTL Indexes": "If the indexed field in a document is not a date or
  an array that holds one or more date values, the document will not expire"). DynamoDB's own
  expiries reach MongoDB as stream REMOVEs, applied per ``Settings.ttl_deletes``;
* on a **sharded cluster** (``hello``'s ``msg`` is ``"isdbgrid"``: a mongos) the collection is
  sharded before the copy on the key the user chooses (default: hashed on the partition key),
  which must be ``Settings.shard_key``'s fields: the replicator's writes carry those fields in
  their filters, as MongoDB requires of an upsert on a sharded collection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from replicator.errors import ConfigurationError, ResourceUnavailable
from replicator.settings import FIELDS_FIELD, Settings
from replicator.sharding import movable_shard_key

log = logging.getLogger(__name__)

#: A shard key or index key document as ordered pairs: field -> 1 or "hashed".
KeyPattern = tuple[tuple[str, Any], ...]
#: A sample value of each DynamoDB key type, to see what the replicator writes for an attribute.
_SAMPLES: dict[str, dict[str, Any]] = {"S": {"S": "sample"}, "N": {"N": "1"}, "B": {"B": b"sample"}}


# -- the plan (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexPlan:
    """One MongoDB index made from one DynamoDB secondary index."""

    #: the MongoDB index name (the DynamoDB index's name; ``_id_`` is MongoDB's, see _index_name)
    name: str
    #: the key pattern, in the DynamoDB index's key order (ascending)
    keys: KeyPattern
    #: ``partialFilterExpression``: the index key attributes an item may lack (empty: none)
    partial: Mapping[str, Any]
    #: "GSI" or "LSI" and the DynamoDB index name it comes from
    kind: Literal["GSI", "LSI"]
    source: str

    def options(self) -> dict[str, Any]:
        """``createIndexes``' options besides the key (the name, the partial filter)."""
        options: dict[str, Any] = {"name": self.name}
        if self.partial:
            options["partialFilterExpression"] = dict(self.partial)
        return options

    def spec(self) -> dict[str, Any]:
        """The ``createIndexes`` ``indexes`` entry."""
        return {"key": dict(self.keys), **self.options()}


@dataclass(frozen=True)
class ShardPlan:
    """``shardCollection``'s key for the collection, on a sharded cluster."""

    key: KeyPattern
    #: where the key came from: "--shard-key", "Settings.shard_key" or "default"
    origin: str
    #: why the replicator could not write to the collection sharded on this key (the key is
    #: not in its Settings.shard_key): prepare refuses to shard then; None: it can
    refusal: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A DynamoDB index that gets no MongoDB index, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class TargetPlan:
    """What the target needs for one table: indexes, the shard key, what is only reported."""

    table: str
    #: the table key attributes, partition key first
    key_schema: tuple[str, ...]
    indexes: tuple[IndexPlan, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    #: the shard key, applied only on a sharded cluster (None: no sharding asked for)
    shard: ShardPlan | None = None
    #: DescribeTimeToLive's attribute when TTL is on (ENABLED or ENABLING)
    ttl_attribute: str | None = None
    #: what the user should know and nothing creates (one line each)
    notes: tuple[str, ...] = field(default=())


def key_schema_of(table: Mapping[str, Any]) -> tuple[str, ...]:
    """DescribeTable's ``KeySchema`` -> (partition[, sort])."""
    return _key_of(table["KeySchema"])


def _key_of(key_schema: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    kinds = {k["KeyType"]: k["AttributeName"] for k in key_schema}
    return (kinds["HASH"],) + ((kinds["RANGE"],) if "RANGE" in kinds else ())


def parse_shard_key(given: Sequence[str] | Mapping[str, Any] | str) -> KeyPattern:
    """A user's shard key -> a key pattern. Takes ``"tenant,pk:hashed"`` (text, as
    ``--shard-key``), ``["tenant", "pk:hashed"]`` (a migration file's list) or a key document
    ``{"pk": "hashed"}``. A field is ascending (1) unless ``:hashed``; MongoDB allows one hashed
    field. Raises ConfigurationError naming what is wrong."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(given, Mapping):
        pairs = [(str(name), value) for name, value in given.items()]
    else:
        parts = given.split(",") if isinstance(given, str) else list(given)
        for part in (p.strip() for p in parts):
            if not part:
                continue
            name, _, kind = part.partition(":")
            pairs.append((name.strip(), "hashed" if kind.strip().lower() == "hashed" else
                          1 if kind.strip() in ("", "1") else kind.strip()))
    if not pairs:
        raise ConfigurationError("a shard key names at least one field, e.g. pk:hashed")
    for name, value in pairs:
        if value not in ("hashed", 1) or isinstance(value, bool):
            raise ConfigurationError(
                f"shard key field {name!r}: {value!r} is neither ascending (1) nor 'hashed'")
        if not name or name.startswith("$"):
            raise ConfigurationError(f"shard key field {name!r} is not a field name")
    if sum(value == "hashed" for _, value in pairs) > 1:
        raise ConfigurationError("a shard key has at most one hashed field (MongoDB)")
    if len({name for name, _ in pairs}) != len(pairs):
        raise ConfigurationError("a shard key names each field once")
    return tuple(pairs)


def plan_target(
    table: Mapping[str, Any],
    *,
    settings: Settings | None = None,
    time_to_live: Mapping[str, Any] | None = None,
    shard_key: Sequence[str] | Mapping[str, Any] | str | None = None,
    probe: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
) -> TargetPlan:
    """The target's plan for one table.

    ``table``: DescribeTable's ``Table`` (KeySchema, AttributeDefinitions,
    GlobalSecondaryIndexes, LocalSecondaryIndexes). ``time_to_live``: DescribeTimeToLive's
    ``TimeToLiveDescription`` (None: not asked). ``shard_key``: the user's (see
    :func:`parse_shard_key`); None: ``Settings.shard_key`` if set, else hashed on the partition
    key. ``probe``: item (DynamoDB JSON) -> the document the replicator writes for it; default:
    the Replicator's planner built from ``settings`` (transforms and ``id_mapping`` loaded).

    Raises ConfigurationError when the shard key disagrees with ``Settings.shard_key``, or a
    transform / ``id_mapping`` cannot be loaded.
    """
    settings = settings or Settings()
    name = str(table.get("TableName", ""))
    key_schema = key_schema_of(table)
    types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", [])}
    notes: list[str] = []
    skipped: list[Skipped] = []

    candidates: list[tuple[Literal["GSI", "LSI"], str, tuple[str, ...]]] = []
    for index in table.get("GlobalSecondaryIndexes") or []:
        candidates.append(("GSI", index["IndexName"], _key_of(index["KeySchema"])))
    for index in table.get("LocalSecondaryIndexes") or []:
        candidates.append(("LSI", index["IndexName"], _key_of(index["KeySchema"])))

    shard = _shard_plan(shard_key, settings, key_schema)
    shard_fields = [name for name, _ in shard.key]
    # the probe item: every key attribute, and the shard key's top-level fields (attributes too)
    attributes = list(dict.fromkeys([*key_schema, *(a for _, _, k in candidates for a in k),
                                     *(f.split(".")[0] for f in shard_fields if f != "_id")]))
    written, why_unknown = _written_fields(attributes, types, key_schema, settings, probe)
    if why_unknown:
        notes.append(f"the transforms / id_mapping could not be run on a sample item "
                     f"({why_unknown}): the indexes assume they keep every index key attribute "
                     "under its name")

    indexes: list[IndexPlan] = []
    for kind, source, keys in candidates:
        label = f"{kind} {source}"
        problem = _unindexable(keys, written, settings)
        if problem:
            skipped.append(Skipped(label, problem))
            continue
        pattern = tuple((attribute, 1) for attribute in keys)
        partial = {a: {"$exists": True} for a in keys if a not in key_schema}
        same = next((i for i in indexes if i.keys == pattern and dict(i.partial) == partial), None)
        if same is not None:
            # MongoDB refuses a second index of the same key and options under another name
            # (IndexOptionsConflict); the projection, the only possible difference, does not
            # matter to a whole document.
            skipped.append(Skipped(label, f"the same MongoDB index as {same.kind} {same.source} "
                                          "(they differ only in projection, and the document is "
                                          "the whole item)"))
            continue
        indexes.append(IndexPlan(_index_name(source, kind), pattern, partial, kind, source))

    ttl_attribute = None
    status = (time_to_live or {}).get("TimeToLiveStatus")
    if status in ("ENABLED", "ENABLING") and (time_to_live or {}).get("AttributeName"):
        ttl_attribute = str((time_to_live or {})["AttributeName"])
        notes.append(
            f"TTL attribute {ttl_attribute!r} (epoch seconds, a Number): no MongoDB TTL index "
            "is made, since MongoDB expires only BSON dates; DynamoDB's expiries arrive as stream "
            f"REMOVEs and are applied per REPLICATOR_TTL_DELETES (now {settings.ttl_deletes!r})")

    missing = [f for f in shard_fields if written is not None and f != "_id"
               and f.split(".")[0] not in written]
    if missing:
        notes.append(f"shard key field(s) {missing} are not in the document the replicator "
                     "writes for a sample item holding them (a transform removes them): every "
                     "such document is stored as if they were null (one chunk)")
    movable = movable_shard_key(shard_fields, key_schema)
    if movable:
        notes.append(f"shard key field(s) {movable} are not table key attributes: the stream "
                     "must carry old images (NEW_AND_OLD_IMAGES) so a change that moves a "
                     "document can be written (replicator/sharding.py)")
    if settings.guard and settings.tombstones:
        from replicator.tombstones import DELETED_AT

        notes.append(f"the replicator makes its tombstones' TTL index ({{{DELETED_AT}: 1}}, "
                     f"expireAfterSeconds {settings.tombstone_retention_s}) itself, at its "
                     "first delete")
    return TargetPlan(name, key_schema, tuple(indexes), tuple(skipped), shard, ttl_attribute,
                      tuple(notes))


def _index_name(source: str, kind: str) -> str:
    # DynamoDB index names match [a-zA-Z0-9_.-]{3,255}, so "_id_" is one: MongoDB's own name for
    # the _id index. It alone is renamed.
    return f"{kind.lower()}_{source}" if source == "_id_" else source


def _unindexable(keys: Sequence[str], written: Mapping[str, Any] | None,
                 settings: Settings) -> str | None:
    for attribute in keys:
        if attribute == "_id" or (settings.guard and attribute == settings.sequence_field) or (
                settings.write_mode == "merge" and attribute == FIELDS_FIELD):
            # The document's _id is made from the table key, and the sequence field and merge
            # mode's field list are the replicator's: an attribute of that name is not what the
            # field holds (merge mode quarantines an item holding the list's name).
            return (f"key attribute {attribute!r} is a field the replicator writes itself "
                    "(the document's identity, its sequence field, or merge mode's list of the "
                    "table's fields), not the attribute")
        if "." in attribute or attribute.startswith("$"):
            # The replicator stores the attribute as one top-level field of that name; an index
            # key "a.b" means the path a -> b, and a "$" field cannot be indexed at all.
            return (f"key attribute {attribute!r} is a field name an index key cannot address "
                    "('.' is a path separator in index keys, '$' is refused)")
        if written is not None and attribute not in written:
            return (f"key attribute {attribute!r} is not in the document the replicator writes "
                    "(a transform removes or renames it): index the field it becomes yourself")
    return None


def _written_fields(
    attributes: Sequence[str], types: Mapping[str, str], key_schema: tuple[str, ...],
    settings: Settings, probe: Callable[[dict[str, Any]], Mapping[str, Any]] | None,
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The document written for an item holding every key attribute (a sample value of its
    declared type), or (None, why) when the user's code refuses the sample."""
    item = {name: _SAMPLES.get(types.get(name, "S"), _SAMPLES["S"]) for name in attributes}
    if probe is None:
        if not settings.transforms and settings.id_mapping is None:
            # The default mapping: each attribute is a top-level field of its own name.
            return {name: True for name in attributes}, None
        from replicator.expected import ExpectedDocuments

        expected = ExpectedDocuments(replace(settings, key_schema=settings.key_schema or key_schema))
        probe = expected.document
    try:
        return probe(item), None
    except ConfigurationError:
        raise
    except Exception as error:  # user code: a transform written for real items may refuse ours
        return None, f"{type(error).__name__}: {error}"


def _shard_plan(
    given: Sequence[str] | Mapping[str, Any] | str | None, settings: Settings,
    key_schema: tuple[str, ...],
) -> ShardPlan:
    if given is not None and len(given) > 0:
        plan = ShardPlan(parse_shard_key(given), "--shard-key")
    elif settings.shard_key:
        fields = list(settings.shard_key)
        plan = ShardPlan(((fields[0], "hashed"), *((f, 1) for f in fields[1:])),
                         "Settings.shard_key")
    else:
        plan = ShardPlan(((key_schema[0], "hashed"),), "default")
    names = tuple(name for name, _ in plan.key)
    if settings.shard_key and tuple(settings.shard_key) != names:
        raise ConfigurationError(
            f"shard key {_js(dict(plan.key))} names fields {list(names)}, but the replicator's "
            f"REPLICATOR_SHARD_KEY (Settings.shard_key) is {list(settings.shard_key)}: its writes "
            "carry those fields in their filters, so the two must name the same fields in the "
            "same order")
    if not settings.shard_key:
        # An upsert on a sharded collection must carry the whole shard key in its filter
        # (MongoDB manual, "Upsert on a Sharded Collection"); the replicator adds it only when
        # told which fields it is.
        return replace(plan, refusal=(
            f"the collection would be sharded on {_js(dict(plan.key))}, but the replicator "
            "is not told its shard key, and its upserts must carry it: set "
            f"REPLICATOR_SHARD_KEY={','.join(names)} for this command and every replicator of "
            "the table (the Lambda function, `replicator run`), then run again"))
    return plan


# -- the commands, as a user would type them ------------------------------------------------------
def _js(value: Any) -> str:
    """A value as mongosh reads it (JSON, which mongosh accepts; key order kept)."""
    return json.dumps(value, separators=(", ", ": "))


def collection_ref(database: str, collection: str) -> str:
    return f"db.getSiblingDB({_js(database)}).getCollection({_js(collection)})"


def index_command(database: str, collection: str, index: IndexPlan) -> str:
    return (f"{collection_ref(database, collection)}.createIndex({_js(dict(index.keys))}, "
            f"{_js(index.options())})")


def shard_command_documents(database: str, collection: str,
                            shard: ShardPlan) -> list[dict[str, Any]]:
    """The admin commands that shard the collection, in order, as sent (the command name first):
    ``enableSharding`` (creates the database on its primary shard; a no-op when it exists) and
    ``shardCollection`` (MongoDB manual, "Shard a Collection")."""
    return [{"enableSharding": database},
            {"shardCollection": f"{database}.{collection}", "key": dict(shard.key)}]


def shard_commands(database: str, collection: str, shard: ShardPlan) -> list[str]:
    """:func:`shard_command_documents` as mongosh lines."""
    return [f"db.adminCommand({_js(document)})"
            for document in shard_command_documents(database, collection, shard)]


# -- applying a plan (I/O) ------------------------------------------------------------------------
@dataclass
class PrepareReport:
    """What :func:`prepare` did (or, in a dry run, would do): one line per command, exact."""

    namespace: str
    sharded_cluster: bool | None
    #: commands run (dry run: that would run), as mongosh lines
    commands: list[str] = field(default_factory=list)
    #: indexes / sharding already as planned
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool) -> list[str]:
        """What the user reads: commands first, then (as mongosh comments) the rest."""
        head = ("would run" if dry_run else "ran") + f" on {self.namespace}"
        topology = {True: "sharded cluster (mongos)", False: "not a sharded cluster",
                    None: "topology not asked (no MongoDB)"}[self.sharded_cluster]
        out = [f"// {head}: {len(self.commands)} command(s); {topology}"]
        out += self.commands
        out += [f"// exists: {line}" for line in self.unchanged]
        out += [f"// skipped: {line}" for line in self.skipped]
        out += [f"// note: {line}" for line in self.notes]
        return out


def is_sharded_cluster(client: Any) -> bool:
    """True when ``client`` talks to a mongos: ``hello``'s ``msg`` is ``"isdbgrid"`` (MongoDB
    manual, ``hello``: "msg: contains the value isdbgrid when hello returns from a mongos")."""
    return bool(client.admin.command("hello").get("msg") == "isdbgrid")


def prepare(
    collection: Any,
    plan: TargetPlan,
    *,
    create_indexes: bool = True,
    shard: bool = True,
    dry_run: bool = False,
    sharded: bool | None = None,
    namespace: tuple[str, str] | None = None,
) -> PrepareReport:
    """Apply ``plan`` to ``collection`` (a pymongo Collection; None only with ``dry_run``).

    Idempotent: an index equal to the plan's (key, partial filter, not unique / sparse / TTL),
    under its name or another, is left alone; a collection already sharded on the plan's key is
    left alone. The shard key comes first (``enableSharding``, then ``shardCollection``, which on
    an empty collection makes the shard key's index), then the secondary indexes.
    ``sharded``: whether the target is a sharded cluster (None: asked with ``hello``; without a
    collection in a dry run: the shard commands are listed as "on a sharded cluster").
    ``namespace``: (database, collection) shown when ``collection`` is None.

    Raises ConfigurationError naming the index and the safe command when an index of a planned
    name exists with another definition, or the collection is sharded on another key;
    PyMongoError as the server does.
    """
    if collection is not None:
        database, name = collection.database.name, collection.name
    else:
        database, name = namespace or ("?", "?")
    report = PrepareReport(f"{database}.{name}", None, notes=list(plan.notes))
    report.skipped = [f"{s.source}: {s.reason}" for s in plan.skipped]
    if collection is None and not dry_run:
        raise ConfigurationError("prepare needs a MongoDB collection (only a dry run goes without)")
    if collection is not None and sharded is None:
        sharded = is_sharded_cluster(collection.database.client)
    report.sharded_cluster = sharded
    if shard and plan.shard is not None and sharded is not False:
        if plan.shard.refusal is not None:
            if not dry_run:
                raise ConfigurationError(plan.shard.refusal)
            report.notes.append(f"would refuse: {plan.shard.refusal}")
        _prepare_shard(collection, plan.shard, report, dry_run, database, name)
    elif shard and plan.shard is not None:
        report.notes.append(f"not a sharded cluster: the shard key {_js(dict(plan.shard.key))} "
                            "is not applied")
    if create_indexes:
        _prepare_indexes(collection, plan, report, dry_run, database, name)
    elif plan.indexes:
        report.notes.append(f"--no-indexes: {len(plan.indexes)} index(es) not made")
    return report


def _prepare_shard(collection: Any, shard: ShardPlan, report: PrepareReport, dry_run: bool,
                   database: str, name: str) -> None:
    namespace = f"{database}.{name}"
    enable, shard_collection = shard_commands(database, name, shard)
    if collection is None:  # dry run without MongoDB: what a sharded cluster would get
        report.commands += [enable, shard_collection]
        return
    client = collection.database.client
    entry = client["config"]["collections"].find_one({"_id": namespace})
    if entry is not None and not entry.get("dropped", False):
        existing = _pattern(entry.get("key", {}))
        if existing == _pattern(dict(shard.key)):
            report.unchanged.append(f"{namespace} is sharded on {_js(dict(shard.key))}")
            return
        raise ConfigurationError(
            f"{namespace} is already sharded on {_js(dict(entry.get('key', {})))}, not on "
            f"{_js(dict(shard.key))}: keep it (give --shard-key with that key, and the same "
            "fields in REPLICATOR_SHARD_KEY), or change it with "
            f"db.adminCommand({_js({'reshardCollection': namespace, 'key': dict(shard.key)})})")
    filled = collection.estimated_document_count() > 0
    # shardCollection makes the shard key's index only on an empty collection (MongoDB manual,
    # shardCollection: "If the collection is not empty, you must create the index first").
    support = f"{collection_ref(database, name)}.createIndex({_js(dict(shard.key))})"
    report.commands += [enable, *([support] if filled else []), shard_collection]
    if dry_run:
        return
    enable_document, shard_document = shard_command_documents(database, name, shard)
    client.admin.command(enable_document)
    if filled:
        collection.create_index(list(shard.key))
    client.admin.command(shard_document)
    log.info("sharded %s on %s", namespace, _js(dict(shard.key)))


def _prepare_indexes(collection: Any, plan: TargetPlan, report: PrepareReport, dry_run: bool,
                     database: str, name: str) -> None:
    existing = list(collection.list_indexes()) if collection is not None else []
    wanted = []
    for index in plan.indexes:
        same_name = next((e for e in existing if e.get("name") == index.name), None)
        if same_name is not None:
            if _equal(same_name, index):
                report.unchanged.append(f"index {index.name!r} ({index.kind} {index.source})")
                continue
            raise ConfigurationError(
                f"index {index.name!r} of {database}.{name} exists with another definition "
                f"({_describe(same_name)}) than {index.kind} {index.source} needs "
                f"({_js(index.spec())}): if it is yours, keep it and run with --no-indexes; "
                f"otherwise drop it ({collection_ref(database, name)}.dropIndex("
                f"{_js(index.name)})) and run again")
        twin = next((e for e in existing if _equal(e, index)), None)
        if twin is not None:
            report.unchanged.append(f"index {index.name!r} ({index.kind} {index.source}) exists "
                                    f"as {twin.get('name')!r}")
            continue
        wanted.append(index)
        report.commands.append(index_command(database, name, index))
    if collection is not None:
        # An index no GSI / LSI accounts for (a GSI deleted since an earlier run, or the user's
        # own) is left alone, but said: the table no longer needs what it costs.
        planned = {i.name for i in plan.indexes}
        shard = _pattern(dict(plan.shard.key)) if plan.shard is not None else None
        for entry in existing:
            index_name = entry.get("name")
            if (index_name == "_id_" or index_name in planned
                    or any(_equal(entry, i) for i in plan.indexes)
                    or _pattern(entry.get("key", {})) == shard):
                continue
            report.notes.append(
                f"index {index_name!r} ({_describe(entry)}) comes from no GSI or LSI of the "
                "table (one deleted since, or your own): left alone; if nothing uses it: "
                f"{collection_ref(database, name)}.dropIndex({_js(index_name)})")
    if wanted and not dry_run:
        # One createIndexes for all: the server builds them in one pass over the collection.
        from pymongo import IndexModel

        collection.create_indexes([IndexModel(list(i.keys), **i.options()) for i in wanted])
        log.info("created %d index(es) on %s.%s: %s", len(wanted), database, name,
                 ", ".join(i.name for i in wanted))


def _pattern(key: Mapping[str, Any]) -> list[tuple[str, Any]]:
    # 1, 1.0 and Int64(1) are one direction in a key pattern as the server lists it.
    return [(str(k), v if isinstance(v, str) else int(v)) for k, v in key.items()]


def _equal(existing: Mapping[str, Any], index: IndexPlan) -> bool:
    """An existing index (listIndexes' entry) is the planned one: same key pattern, same partial
    filter, and none of the options that change which documents it holds or refuses."""
    if _pattern(existing.get("key", {})) != _pattern(dict(index.keys)):
        return False
    if _plain(existing.get("partialFilterExpression") or {}) != _plain(dict(index.partial)):
        return False
    return not any(existing.get(option) for option in
                   ("unique", "sparse", "expireAfterSeconds", "collation", "hidden"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        # {$exists: 1} is {$exists: true} (the server keeps a filter as it was given)
        return {str(k): bool(v) if k == "$exists" else _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(existing: Mapping[str, Any]) -> str:
    shown = {k: _plain(v) for k, v in existing.items() if k not in ("v", "ns", "name")}
    return json.dumps(shown, default=str, separators=(", ", ": "))


# -- one table, from AWS to MongoDB ---------------------------------------------------------------
def describe(dynamodb: Any, table: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """DescribeTable's ``Table`` and DescribeTimeToLive's ``TimeToLiveDescription`` (None when
    the caller may not ask: the TTL is then only not reported). A missing table raises
    ResourceUnavailable."""
    from replicator.poller.streams import error_code

    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ResourceUnavailable(
                f"table {table!r} not found (check --table, --region and --endpoint-url)") from None
        raise
    try:
        ttl = dynamodb.describe_time_to_live(TableName=table).get("TimeToLiveDescription")
    except Exception as error:
        if error_code(error) not in ("AccessDeniedException", "UnknownOperationException"):
            raise
        log.warning("DescribeTimeToLive refused (%s): the TTL attribute is not reported",
                    error_code(error))
        ttl = None
    return description, ttl


def prepare_table(
    dynamodb: Any,
    table: str,
    collection: Any,
    settings: Settings | None = None,
    *,
    create_indexes: bool = True,
    shard_key: Sequence[str] | Mapping[str, Any] | str | None = None,
    dry_run: bool = False,
    namespace: tuple[str, str] | None = None,
    write: Callable[[str], None] | None = None,
) -> PrepareReport:
    """DescribeTable + DescribeTimeToLive -> :func:`plan_target` -> :func:`prepare`; each line of
    the report goes to ``write`` (e.g. ``print``) when given. Raises as both do."""
    description, ttl = describe(dynamodb, table)
    plan = plan_target(description, settings=settings, time_to_live=ttl, shard_key=shard_key)
    report = prepare(collection, plan, create_indexes=create_indexes, dry_run=dry_run,
                     namespace=namespace)
    if write is not None:
        for line in report.lines(dry_run):
            write(line)
    return report

