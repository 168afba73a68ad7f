"""The migration file: many tables, one run (``replicator sync|run|verify|recover
--migration-file PATH``; docs/migration.md, "A whole application").

A TOML file (read with :mod:`tomllib`, stdlib since Python 3.11) naming every table of an
application, where each goes and how::

    [defaults]                        # shared by every table; each key optional
    mongodb_uri_env = "SHOP_MONGODB_URI"   # the URI's source: a variable's name (never the URI),
    # mongodb_uri_secret_arn = "arn:..."   # or a Secrets Manager secret,
    # mongodb_uri_parameter = "/shop/uri"  # or an SSM SecureString parameter
    region = "eu-west-1"
    endpoint_url = "http://127.0.0.1:8000"
    database = "shop"                 # the database of a table entry without a namespace
    create_indexes = true
    bad_records = "quarantine"        # any Settings field: every table's default

    [[tables]]
    table = "orders"                  # the DynamoDB table (required)
    namespace = "shop.orders"         # database.collection (default: <defaults.database>.<table>)
    key_schema = ["pk"]               # partition[, sort] (default: from DescribeTable)
    transforms = ["myapp.transforms:orders"]
    ttl_deletes = "archive"
    shard_key = { customer = "hashed" }   # or ["customer", "placed"] (ranged)
    create_indexes = false
    # kinesis_stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/orders"   # read this
    #                                 # Kinesis data stream instead of the table's DynamoDB stream

Settings come from the ``REPLICATOR_*`` variables, then ``[defaults]``, then the table's entry:
the most specific wins. Every key is checked on its own; an unknown key or a value of the wrong
kind is one :class:`MigrationFileError` naming the file, the table entry (``tables[1]
(orders)``) and the field path (``shard_key.customer``), never a URI.

Pure parsing: no I/O but reading the file, nothing connects (the CLI resolves the URI source, builds
the clients and runs the commands per table, replicator/cli/tables.py). :class:`TableMigration` is
the one per-table options object every command receives, including what preparing the target
needs (``create_indexes``, ``shard_key``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from replicator.errors import ConfigurationError
from replicator.events import is_kinesis_arn
from replicator.settings import KINDS, Settings

#: ``{field: 1}`` (ranged) or ``{field: "hashed"}``, in the shard key's order
ShardKeySpec = tuple[tuple[str, Literal[1, "hashed"]], ...]
UriSourceKind = Literal["env", "secret_arn", "parameter"]

#: the keys of ``[defaults]`` that are not Settings fields
DEFAULT_KEYS = ("mongodb_uri_env", "mongodb_uri_secret_arn", "mongodb_uri_parameter", "region",
                "endpoint_url", "database", "create_indexes")
#: the keys of a ``[[tables]]`` entry that are not Settings fields (key_schema and shard_key are
#: Settings fields, read here with their own checks)
TABLE_KEYS = ("table", "namespace", "checkpoint_collection", "create_indexes", "kinesis_stream")
#: Settings fields a migration file cannot set: the file pins each entry's table itself
NOT_IN_FILE = ("source_table",)
#: the collections kept beside a table's collection, by their default suffix
SIDE_COLLECTIONS = ("_sync", "_tombstones", "_quarantine", "_ttl_archive")
#: https://www.mongodb.com/docs/manual/reference/limits/#naming-restrictions (Unix and Windows)
DATABASE_FORBIDDEN = set('/\\. "$*<>:|?')


class MigrationFileError(ConfigurationError):
    """The migration file cannot be used: the message names the file, the entry and the field."""


@dataclass(frozen=True)
class UriSource:
    """Where the MongoDB URI is read: a variable (``env``), a Secrets Manager secret
    (``secret_arn``) or an SSM parameter (``parameter``), by ``name``. Never the URI itself."""

    kind: UriSourceKind
    name: str


@dataclass(frozen=True)
class Defaults:
    """``[defaults]``: the target's URI source, the AWS region and endpoint, the database of an
    entry without a namespace, and the Settings values every table starts from."""

    uri_source: UriSource | None = None
    region: str | None = None
    endpoint_url: str | None = None
    database: str | None = None
    create_indexes: bool = True
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableMigration:
    """One table of the file: everything a command needs to migrate it.

    ``settings_values``: the Settings fields named by ``[defaults]`` and the entry (the entry's
    win), key_schema and shard_key's names included; :meth:`settings` lays them over a base
    (the environment's). ``create_indexes``: build the target's indexes from the table's GSIs and
    LSIs before the copy. ``shard_key``: the collection's shard key with its kind of each field
    (``None``: not named -- the target's preparation picks its default); its names are also
    ``settings_values["shard_key"]``, which the replicator puts in each write's filter.
    """

    table: str
    database: str
    collection: str
    #: ``tables[i] (name)``: how errors and summaries name the entry
    entry: str
    key_schema: tuple[str, ...] | None = None
    checkpoint_collection: str | None = None
    create_indexes: bool = True
    shard_key: ShardKeySpec | None = None
    settings_values: Mapping[str, Any] = field(default_factory=dict)
    #: the Kinesis data stream the table sends its changes to, read instead of its DynamoDB
    #: stream (docs/kinesis.md); None: DynamoDB Streams
    kinesis_stream: str | None = None

    @property
    def namespace(self) -> str:
        return f"{self.database}.{self.collection}"

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (default: all defaults) with this table's values laid over it."""
        return settings_over(base or Settings(), self.settings_values)


def settings_over(base: Settings, values: Mapping[str, Any]) -> Settings:
    """``base`` with a table's ``values`` laid over it (raises ConfigurationError as Settings
    does). A ``tombstone_retention_s`` that ``base`` derived from its stream's retention (the
    retention + 24 hours) is derived again from the entry's ``stream_retention_s``: a plain
    ``replace`` would keep the 24-hour stream's 48 hours and refuse a year-long stream."""
    values = dict(values)
    if ("stream_retention_s" in values and "tombstone_retention_s" not in values
            and base.tombstone_retention_s == base.stream_retention_s + 24 * 3600):
        values["tombstone_retention_s"] = 0  # Settings derives it (settings.py __post_init__)
    return replace(base, **values)


@dataclass(frozen=True)
class MigrationFile:
    """A parsed migration file: its path, ``[defaults]`` and tables in the file's order."""

    path: str
    defaults: Defaults
    tables: tuple[TableMigration, ...]

    def select(self, only: Sequence[str] | None) -> tuple[TableMigration, ...]:
        """The tables named in ``only`` (in the file's order), or all; a name not in the file is
        a MigrationFileError listing the file's tables."""
        if not only:
            return self.tables
        names = {t.table for t in self.tables}
        unknown = [name for name in only if name not in names]
        if unknown:
            raise MigrationFileError(
                f"{self.path}: --only {', '.join(unknown)}: no such table in the file (its "
                f"tables: {', '.join(t.table for t in self.tables)})")
        return tuple(t for t in self.tables if t.table in set(only))


# -- reading -------------------------------------------------------------------------------------
def load(path: str | Path) -> MigrationFile:
    """Read and check the migration file at ``path``; raises :class:`MigrationFileError` (a
    ConfigurationError: exit 2) for a file that cannot be read, is not TOML, or names an unknown
    key or a bad value."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise MigrationFileError(f"{name}: cannot read the migration file ({error.strerror or error})"
                                 ) from None
    except tomllib.TOMLDecodeError as error:
        raise MigrationFileError(f"{name}: not valid TOML ({error})") from None
    return parse(data, name)


def parse(data: Mapping[str, Any], path: str = "<migration file>") -> MigrationFile:
    """The migration file's checked content from its TOML ``data``; ``path`` names it in errors."""
    unknown = sorted(set(data) - {"defaults", "tables"})
    if unknown:
        raise MigrationFileError(f"{path}: unknown key {unknown[0]!r} at the top level (the file "
                                 "holds [defaults] and [[tables]])")
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, Mapping):
        raise MigrationFileError(f"{path}: defaults must be a table ([defaults])")
    defaults = _defaults(raw_defaults, path)
    raw_tables = data.get("tables")
    if not isinstance(raw_tables, list) or not raw_tables:
        raise MigrationFileError(f"{path}: name at least one table ([[tables]] with table = ...)")
    tables: list[TableMigration] = []
    for index, raw in enumerate(raw_tables):
        where = f"{path}: tables[{index}]"
        if not isinstance(raw, Mapping):
            raise MigrationFileError(f"{where}: each entry is a table ([[tables]])")
        tables.append(_table(raw, defaults, where, index))
    _distinct(tables, path)
    return MigrationFile(path, defaults, tuple(tables))


def _defaults(raw: Mapping[str, Any], path: str) -> Defaults:
    where = f"{path}: [defaults]"
    sources = [key for key in ("mongodb_uri_env", "mongodb_uri_secret_arn", "mongodb_uri_parameter")
               if key in raw]
    if len(sources) > 1:
        raise MigrationFileError(f"{where}: name one source of the MongoDB URI, not "
                                 f"{' and '.join(sources)}")
    if "mongodb_uri" in raw:
        raise MigrationFileError(
            f"{where}: mongodb_uri: a migration file holds no URI (files are copied, committed, "
            "shown); name where it is read: mongodb_uri_env, mongodb_uri_secret_arn or "
            "mongodb_uri_parameter")
    uri_source = None
    if sources:
        kind: UriSourceKind = {"mongodb_uri_env": "env", "mongodb_uri_secret_arn": "secret_arn",
                               "mongodb_uri_parameter": "parameter"}[sources[0]]  # type: ignore[assignment]
        uri_source = UriSource(kind, _text(raw[sources[0]], where, sources[0]))
    settings = _settings_values(raw, where, set(DEFAULT_KEYS))
    for own in ("key_schema", "shard_key"):
        if own in raw:
            raise MigrationFileError(f"{where}: {own} belongs to each table's entry")
    database = raw.get("database")
    if database is not None:
        _database_name(_text(database, where, "database"), where, "database")
    return Defaults(
        uri_source=uri_source,
        region=_optional_text(raw, where, "region"),
        endpoint_url=_optional_text(raw, where, "endpoint_url"),
        database=database,
        create_indexes=_flag(raw, where, "create_indexes", True),
        settings=settings,
    )


def _table(raw: Mapping[str, Any], defaults: Defaults, where: str, index: int) -> TableMigration:
    if "table" not in raw:
        raise MigrationFileError(f"{where}: table: missing (the DynamoDB table's name)")
    name = _text(raw["table"], where, "table")
    where = f"{where} ({name})"
    settings = {**defaults.settings, **_settings_values(raw, where, set(TABLE_KEYS))}
    namespace = raw.get("namespace")
    if namespace is None:
        if defaults.database is None:
            raise MigrationFileError(f"{where}: namespace: missing (database.collection), and "
                                     "[defaults] names no database")
        database, collection = defaults.database, name
        # a DynamoDB table name may be one no collection can have ("system.users")
        _collection_name(collection, where, "table (the default collection name)")
    else:
        database, collection = _namespace(_text(namespace, where, "namespace"), where)
    checkpoints = _optional_text(raw, where, "checkpoint_collection")
    if checkpoints is not None:
        _collection_name(checkpoints, where, "checkpoint_collection")
    shard_key = _shard_key(raw["shard_key"], where) if "shard_key" in raw else None
    if shard_key is not None:
        settings["shard_key"] = tuple(name for name, _ in shard_key)
    key_schema = settings.get("key_schema")
    kinesis_stream = _optional_text(raw, where, "kinesis_stream")
    if kinesis_stream is not None:
        if not is_kinesis_arn(kinesis_stream):
            raise MigrationFileError(
                f"{where}: kinesis_stream: {kinesis_stream!r} is not a Kinesis data stream ARN "
                "(arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)")
        if settings.get("source") == "dynamodb":
            raise MigrationFileError(
                f"{where}: kinesis_stream: the entry's source is \"dynamodb\" (DynamoDB "
                "Streams): leave source out, or set it to \"kinesis\"")
    # source = "kinesis" without kinesis_stream: --kinesis-stream may name it (--only TABLE);
    # a command that reads changes refuses it otherwise (replicator/cli/endpoints.make_poller)
    try:  # each value was checked alone; [defaults] and the entry together may still disagree
        Settings(**settings)
    except ConfigurationError as error:
        raise MigrationFileError(f"{where}: {error} ([defaults] and this entry together)"
                                 ) from None
    return TableMigration(
        table=name, database=database, collection=collection, entry=f"tables[{index}] ({name})",
        key_schema=key_schema, checkpoint_collection=checkpoints,
        create_indexes=_flag(raw, where, "create_indexes", defaults.create_indexes),
        shard_key=shard_key, settings_values=settings, kinesis_stream=kinesis_stream,
    )


def _distinct(tables: Sequence[TableMigration], path: str) -> None:
    """Two entries of one table, or two tables into one collection, would share documents and
    checkpoints: refused."""
    seen: dict[str, str] = {}
    targets: dict[str, str] = {}
    # MongoDB refuses a database whose name differs from an existing one's only in case
    # (error 13297, DatabaseDifferCase)
    databases: dict[str, tuple[str, str]] = {}
    for table in tables:
        other = databases.setdefault(table.database.lower(), (table.database, table.entry))
        if other[0] != table.database:
            raise MigrationFileError(
                f"{path}: {table.entry}: database {table.database!r} differs from "
                f"{other[0]!r} of {other[1]} only in case, which MongoDB refuses (database "
                "names are unique regardless of case)")
    streams: dict[str, str] = {}
    for table in tables:
        if table.kinesis_stream is not None:
            if table.kinesis_stream in streams:
                raise MigrationFileError(
                    f"{path}: {table.entry}: kinesis_stream {table.kinesis_stream} is also "
                    f"{streams[table.kinesis_stream]}'s: each table needs its own data stream "
                    "(a table's poller would quarantine the other table's records)")
            streams[table.kinesis_stream] = table.entry
    for table in tables:
        if table.table in seen:
            raise MigrationFileError(f"{path}: {table.entry}: table {table.table!r} is already "
                                     f"listed as {seen[table.table]}")
        seen[table.table] = table.entry
        if table.namespace in targets:
            raise MigrationFileError(
                f"{path}: {table.entry}: namespace {table.namespace} is already the target of "
                f"{targets[table.namespace]} (one collection per table: their _ids and "
                "checkpoints would mix)")
        targets[table.namespace] = table.entry
    # what the replicator keeps beside each collection (replicator/core.py, poller/checkpoints.py,
    # migrate/segments.py): another table's documents there would mix with it. Tombstones and
    # archived expiries are keyed by _id alone, so two tables sharing one would also mix
    beside: dict[str, str] = {}
    for table in tables:
        for name in _side_collections(table):
            namespace = f"{table.database}.{name}"
            if namespace in beside:
                raise MigrationFileError(
                    f"{path}: {table.entry}: {namespace} is also where the replicator keeps the "
                    f"checkpoints, progress, quarantine or deletes of {beside[namespace]} (one "
                    "per table: deletes and expiries are keyed by _id alone)")
            beside[namespace] = table.entry
    for table in tables:
        if table.namespace in beside:
            raise MigrationFileError(
                f"{path}: {table.entry}: namespace {table.namespace} is where the replicator "
                f"keeps the checkpoints, progress or deletes of {beside[table.namespace]}")


def _side_collections(table: TableMigration) -> list[str]:
    """The collections kept beside ``table``'s collection, in its database: its checkpoints, the
    copy's progress, and the quarantine, tombstones and TTL archive (named in its settings, or
    by their default suffixes; replicator/core.py)."""
    values = table.settings_values
    named = {"_quarantine": values.get("quarantine_collection"),
             "_tombstones": values.get("tombstone_collection"),
             "_ttl_archive": values.get("archive_collection")}
    return [table.checkpoint_collection or f"{table.collection}_checkpoints",
            *(named.get(suffix) or f"{table.collection}{suffix}" for suffix in SIDE_COLLECTIONS)]


# -- values --------------------------------------------------------------------------------------
def _settings_values(raw: Mapping[str, Any], where: str, own: set[str]) -> dict[str, Any]:
    """The Settings fields of ``raw`` (each checked alone, as ``Settings.from_env`` checks a
    variable); any key neither in ``own`` nor a Settings field is an error naming it."""
    fields = set(Settings.field_names())
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in own or key == "shard_key":
            continue  # shard_key: read with its kinds by _shard_key
        if key in NOT_IN_FILE:
            raise MigrationFileError(f"{where}: {key}: set by the file itself (each entry's "
                                     "table), not a key of its own")
        if key not in fields:
            known = sorted((own | fields) - set(NOT_IN_FILE))
            raise MigrationFileError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        checked = _setting(key, value, where)
        try:
            Settings(**{key: checked})
        except ConfigurationError as error:
            raise MigrationFileError(f"{where}: {key}: {error}") from None
        values[key] = checked
    return values


def _setting(key: str, value: Any, where: str) -> Any:
    kind = KINDS[key]
    if kind == "names":
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list)
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise MigrationFileError(f"{where}: {key}: a list of names, e.g. [\"a\", \"b\"]")
        names = tuple(v.strip() for v in value)
        if key == "key_schema" and (not 1 <= len(names) <= 2 or len(set(names)) != len(names)):
            raise MigrationFileError(f"{where}: key_schema: one or two different attributes: "
                                     "[partition] or [partition, sort]")
        return names
    if kind == "flag":
        if not isinstance(value, bool):
            raise MigrationFileError(f"{where}: {key}: true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise MigrationFileError(f"{where}: {key}: a whole number")
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MigrationFileError(f"{where}: {key}: a number of seconds")
        return float(value)
    return _text(value, where, key)


def _shard_key(value: Any, where: str) -> ShardKeySpec:
    """``["a", "b"]`` (ranged on each) or ``{a = "hashed"}`` / ``{a = 1, b = 1}``; at most one
    hashed field (MongoDB's rule for a compound hashed shard key)."""
    spec: list[tuple[str, Literal[1, "hashed"]]] = []
    if isinstance(value, list):
        for i, name in enumerate(value):
            if not isinstance(name, str) or not name.strip():
                raise MigrationFileError(f"{where}: shard_key[{i}]: a field name")
            spec.append((name.strip(), 1))
    elif isinstance(value, Mapping):
        for name, kind in value.items():
            if not isinstance(name, str) or not name.strip():
                raise MigrationFileError(f"{where}: shard_key: {name!r} is not a field name")
            if kind == "hashed" or (type(kind) is int and kind == 1):  # not 1.0, not true
                spec.append((name, kind))
            else:
                raise MigrationFileError(f"{where}: shard_key.{name}: 1 (ranged) or \"hashed\"")
    else:
        raise MigrationFileError(f"{where}: shard_key: a list of field names, or a table "
                                 "{field = \"hashed\"} / {field = 1, ...}")
    if not spec:
        raise MigrationFileError(f"{where}: shard_key: name at least one field")
    if sum(1 for _, kind in spec if kind == "hashed") > 1:
        raise MigrationFileError(f"{where}: shard_key: at most one hashed field")
    names = [name for name, _ in spec]
    if len(set(names)) != len(names):
        raise MigrationFileError(f"{where}: shard_key: a field named twice")
    for name in names:
        if name.startswith("$") or "\x00" in name:
            raise MigrationFileError(f"{where}: shard_key.{name}: not a field path")
    return tuple(spec)


def _namespace(text: str, where: str) -> tuple[str, str]:
    """``database.collection``: the database name ends at the first dot (a database name has
    none; a collection name may)."""
    database, dot, collection = text.partition(".")
    if not dot or not database or not collection:
        raise MigrationFileError(f"{where}: namespace: database.collection, e.g. \"shop.orders\"")
    _database_name(database, where, "namespace")
    _collection_name(collection, where, "namespace")
    return database, collection


def _database_name(name: str, where: str, key: str) -> None:
    bad = sorted(DATABASE_FORBIDDEN & set(name))
    if bad or "\x00" in name or len(name.encode()) >= 64:
        raise MigrationFileError(f"{where}: {key}: {name!r} is not a MongoDB database name "
                                 f"(none of {' '.join(sorted(DATABASE_FORBIDDEN))}, a NUL, or "
                                 "64 bytes and more)")


def _collection_name(name: str, where: str, key: str) -> None:
    if not name or "$" in name or "\x00" in name or name.startswith("system."):
        raise MigrationFileError(f"{where}: {key}: {name!r} is not a MongoDB collection name "
                                 "(no $, no NUL, not system.*)")


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MigrationFileError(f"{where}: {key}: a non-empty string")
    return value.strip()


def _optional_text(raw: Mapping[str, Any], where: str, key: str) -> str | None:
    return _text(raw[key], where, key) if key in raw else None


def _flag(raw: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise MigrationFileError(f"{where}: {key}: true or false")
    return value
