"""``mongomock``: the in-process target, behind an adapter that gives it pymongo's contract.

mongomock 4.3 falls short of what the replicator relies on, and the production write path must
not bend around a test double (issue #10). So the harness wraps it (:func:`mongomock_client`):

- ``bulk_write``: mongomock's own breaks with pymongo >= 4.11 (its ``add_update()`` rejects the
  new ``sort`` argument). The adapter encodes every operation first, as pymongo does before
  sending (an unencodable one raises the same bson error, nothing applied), then applies them one
  by one with the semantics of a bulk write (unordered: every operation is tried; ordered: stop at
  the first error) and answers like pymongo: a :class:`pymongo.results.BulkWriteResult`, or a
  :class:`pymongo.errors.BulkWriteError` whose ``writeErrors`` carry ``index``, ``code``,
  ``errmsg`` and, for a duplicate key, ``keyPattern``/``keyValue`` of the violated unique index
  (``_id`` included), as mongod reports them.
- ``$``-prefixed top-level names: mongomock refuses them and has no ``$replaceWith``; MongoDB 5.0+
  stores them through the planner's ``[{"$replaceWith": {"$literal": doc}}]`` pipeline. The
  adapter stores such names escaped (``$x`` -> ``＄x``, reversibly) and unescapes every document
  it reads, so a convergence check sees the real names.
- write_mode="merge"'s pipeline (``replicator.writes.merge_pipeline``: ``$replaceWith`` of
  ``$mergeObjects`` over ``$objectToArray`` / ``$filter`` / ``$arrayToObject``) is evaluated
  by the adapter for that one shape (:func:`_merge_replacement`): the stored document read and
  the result replaced under the lock, so the write stays atomic.
- A ``Decimal128`` inside an ``_id`` cannot be inserted (mongomock hashes ``_id``s: TypeError),
  although MongoDB accepts it: the adapter answers with a permanent write error that names the
  limitation (the replicator quarantines the record) rather than an exception.
- A lock makes each write (and each read) atomic against the harness's parallel batches.
- ``.database`` / ``.client`` are wrapped too; ``client.admin.command("hello")`` answers like a
  standalone mongod (no ``setName``: no transactions); ``collMod`` changes a TTL index's
  ``expireAfterSeconds``; ``createIndex`` with other options on an existing index fails with
  IndexOptionsConflict (85), as on MongoDB.

Reading pymongo operations' private attributes (``_filter``, ``_doc``, ``_upsert``) is fine here:
this is the harness, not ``replicator/``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import bson
from bson.decimal128 import Decimal128
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)
from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.results import BulkWriteResult

from harness.backends.base import register_target

#: FULLWIDTH DOLLAR SIGN: stands for a leading "$" in a stored top-level name.
DOLLAR_ESCAPE = "\uff04"
BAD_VALUE = 2
INDEX_OPTIONS_CONFLICT = 85
DUPLICATE_KEY = 11000
DECIMAL_ID_MESSAGE = (
    "mongomock cannot store a Decimal128 inside an _id (it hashes _ids: unhashable type "
    "'Decimal128'); MongoDB and mongoeco can. Use the mongoeco target for a table keyed by "
    "fractional numbers"
)

# One lock for every adapter: the harness runs batches in parallel over shared collections, and
# mongomock's stores are plain dicts.
_LOCK = threading.RLock()


def mongomock_client(inner: Any = None) -> MongomockClient:
    """A pymongo-like client over a fresh (or the given) ``mongomock.MongoClient``."""
    if inner is None:
        import mongomock

        inner = mongomock.MongoClient()
    return MongomockClient(inner)


# -- escaping ----------------------------------------------------------------------------------
def escape_field_name(name: str) -> str:
    """``$x`` -> ``＄x``; a name already starting with ``＄`` gets one more, so it reverses."""
    if name.startswith("$"):
        return DOLLAR_ESCAPE + name[1:]
    if name.startswith(DOLLAR_ESCAPE):
        return DOLLAR_ESCAPE + name
    return name


def unescape_field_name(name: str) -> str:
    if not name.startswith(DOLLAR_ESCAPE):
        return name
    rest = name[1:]
    return rest if rest.startswith(DOLLAR_ESCAPE) else "$" + rest


def escape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {escape_field_name(k): v for k, v in document.items()}


def unescape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    if not any(isinstance(k, str) and k.startswith(DOLLAR_ESCAPE) for k in document):
        return dict(document)
    return {unescape_field_name(k): v for k, v in document.items()}


# -- client and database ---------------------------------------------------------------------
class MongomockClient:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getitem__(self, name: str) -> MongomockDatabase:
        return MongomockDatabase(self.inner[name], self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def get_database(self, name: str, **_: Any) -> MongomockDatabase:
        return self[name]

    def list_database_names(self) -> list[str]:
        return list(self.inner.list_database_names())

    def drop_database(self, name: str) -> None:
        self.inner.drop_database(name)

    def start_session(self, **_: Any) -> Any:
        raise NotImplementedError("mongomock has no sessions (a standalone-like target)")

    def close(self) -> None:
        self.inner.close()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MongomockClient) and other.inner is self.inner

    def __hash__(self) -> int:
        return id(self.inner)


class MongomockDatabase:
    def __init__(self, inner: Any, client: MongomockClient) -> None:
        self.inner = inner
        self.client = client
        self.name = inner.name

    def __getitem__(self, name: str) -> MongomockCollection:
        return MongomockCollection(self.inner[name], self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def get_collection(self, name: str, **_: Any) -> MongomockCollection:
        return self[name]

    def list_collection_names(self, **kwargs: Any) -> list[str]:
        return list(self.inner.list_collection_names(**kwargs))

    def drop_collection(self, name: str) -> None:
        self.inner.drop_collection(name)

    def command(self, command: Any, value: Any = 1, **kwargs: Any) -> dict[str, Any]:
        name = command if isinstance(command, str) else next(iter(command))
        if name in ("hello", "isMaster", "ismaster"):
            # A standalone mongod's answer: no setName, no "isdbgrid" -- no transactions.
            return {"ok": 1.0, "isWritablePrimary": True, "ismaster": True,
                    "maxWireVersion": 21, "minWireVersion": 0}
        if name == "ping":
            return {"ok": 1.0}
        if name == "collMod":
            target = value if isinstance(command, str) else command[name]
            options = kwargs.get("index") or ({} if isinstance(command, str)
                                              else command.get("index", {}))
            return self._coll_mod(target, options)
        return dict(self.inner.command(command, **kwargs))

    def _coll_mod(self, collection: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Change a TTL index's ``expireAfterSeconds`` (the only collMod the replicator sends)."""
        with _LOCK:
            indexes = self.inner[collection]._store.indexes
            wanted = list(dict(options.get("keyPattern", {})).items())
            for name, spec in indexes.items():
                if options.get("name") == name or list(spec.get("key", [])) == wanted:
                    old = spec.get("expireAfterSeconds")
                    spec["expireAfterSeconds"] = options["expireAfterSeconds"]
                    return {"ok": 1.0, "expireAfterSeconds_old": old,
                            "expireAfterSeconds_new": options["expireAfterSeconds"]}
        raise OperationFailure("cannot find index for collMod", code=27)  # IndexNotFound


# -- collection --------------------------------------------------------------------------------
class MongomockCollection:
    """A mongomock collection with pymongo's ``bulk_write`` contract; see the module doc."""

    inner: Any
    database: MongomockDatabase

    def __init__(self, inner: Any, database: MongomockDatabase | None = None) -> None:
        while isinstance(inner, MongomockCollection):  # wrapping an adapter: share its inner
            database = database or inner.database
            inner = inner.inner
        self.inner = inner
        if database is None:
            database = MongomockDatabase(inner.database, MongomockClient(inner.database.client))
        self.database = database
        self.name = inner.name
        self.full_name = inner.full_name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- writes ---------------------------------------------------------------------------------
    def bulk_write(self, requests: Sequence[Any], ordered: bool = True, **_: Any) -> Any:
        requests = list(requests)
        for operation in requests:  # pymongo encodes the command before sending any of it
            for part in operation_parts(operation):
                bson.encode(part)
        counts = {"nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0}
        upserted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, operation in enumerate(requests):
            try:
                outcome = self.apply_one(operation)
            except ConnectionFailure:
                # A lost connection is no write error: pymongo raises it for the whole command,
                # with the operations before it applied (as here) and the rest not.
                raise
            except PyMongoError as error:
                errors.append(self._write_error(index, operation, error))
                if ordered:
                    break
                continue
            # A subclass's apply_one (a test's fault) may return None: counts unknown.
            for key, value in (outcome or {}).items():
                if key == "upserted_id":
                    if value is not None:
                        upserted.append({"index": index, "_id": value})
                else:
                    counts[key] += value
        summary = {**counts, "upserted": upserted, "writeErrors": errors,
                   "writeConcernErrors": []}
        if errors:
            raise BulkWriteError(summary)
        return BulkWriteResult(summary, True)

    def apply_one(self, operation: Any) -> dict[str, Any]:
        """Apply one pymongo operation atomically; its counts (``nMatched``, ``nModified``,
        ``nUpserted``, ``nInserted``, ``nRemoved``) and ``upserted_id``. Raises a PyMongoError
        (a WriteError-like OperationFailure with a code) when the write fails."""
        with _LOCK:
            try:
                return self._apply(operation)
            except PyMongoError:
                raise
            except TypeError as error:
                if _has_decimal(_operation_id(operation)):
                    raise OperationFailure(DECIMAL_ID_MESSAGE, code=BAD_VALUE) from error
                raise OperationFailure(f"mongomock: {type(error).__name__}: {error}",
                                       code=BAD_VALUE) from error
            except (ValueError, NotImplementedError, KeyError) as error:
                raise OperationFailure(f"mongomock: {type(error).__name__}: {error}",
                                       code=BAD_VALUE) from error

    def _apply(self, operation: Any) -> dict[str, Any]:
        inner = self.inner
        selector = getattr(operation, "_filter", None)
        if isinstance(operation, InsertOne):
            inner.insert_one(escape_document(operation._doc))
            return {"nInserted": 1}
        if isinstance(operation, (DeleteOne, DeleteMany)):
            many = isinstance(operation, DeleteMany)
            done = (inner.delete_many if many else inner.delete_one)(selector)
            return {"nRemoved": done.deleted_count}
        if isinstance(operation, ReplaceOne):
            done = inner.replace_one(selector, escape_document(operation._doc),
                                     upsert=operation._upsert)
        elif isinstance(operation, (UpdateOne, UpdateMany)):
            literal = _literal_replacement(operation._doc)
            if literal is None and isinstance(operation, UpdateOne):
                literal = self._merged(selector, operation._doc)
            if literal is not None:
                done = inner.replace_one(selector, escape_document(literal),
                                         upsert=operation._upsert)
            elif isinstance(operation, UpdateMany):
                done = inner.update_many(selector, operation._doc, upsert=operation._upsert)
            else:
                done = inner.update_one(selector, operation._doc, upsert=operation._upsert)
        else:
            raise OperationFailure(f"mongomock adapter: unsupported operation {operation!r}",
                                   code=BAD_VALUE)
        inserted = done.upserted_id is not None
        return {"nMatched": 0 if inserted else done.matched_count,
                "nModified": 0 if inserted else done.modified_count,
                "nUpserted": 1 if inserted else 0,
                "upserted_id": done.upserted_id}

    def _merged(self, selector: Any, update: Any) -> dict[str, Any] | None:
        """The document write_mode="merge"'s pipeline leaves (None: not that pipeline); the
        caller holds the lock. Without a match it starts from the filter's equalities, as an
        upsert does."""
        merge = _merge_replacement(update)
        if merge is None:
            return None
        stored = self.inner.find_one(selector)
        if stored is None:
            base = {k: v for k, v in (selector or {}).items()
                    if not k.startswith("$") and not isinstance(v, Mapping)}
        else:
            base = unescape_document(stored)
        listed = base.get(merge["fields_field"])
        owned = set(listed) if isinstance(listed, list) else set()
        kept = {k: v for k, v in base.items() if k not in owned}
        if merge["removed"] is not None:
            sequence_field, sequence = merge["removed"]
            held = base.get(sequence_field)
            if held is None or (isinstance(held, str) and held < sequence):
                kept = {}  # older than the coalesced REMOVE: as if deleted first
        if merge["inserted"] is not None:
            sequence_field, above, below = merge["inserted"]
            held = base.get(sequence_field)
            if isinstance(held, str) and above < held < below:
                kept = {}  # written about an earlier item than the INSERT's
        return {**merge["carried"], **kept, **merge["document"]}

    def _write_error(self, index: int, operation: Any, error: PyMongoError) -> dict[str, Any]:
        code = getattr(error, "code", None) or BAD_VALUE
        item: dict[str, Any] = {"index": index, "code": code,
                                "errmsg": f"{type(error).__name__}: {error}", "op": operation}
        if isinstance(error, DuplicateKeyError) or code == DUPLICATE_KEY:
            item["code"] = DUPLICATE_KEY
            violated = self._violated_index(operation)
            if violated is not None:
                item["keyPattern"], item["keyValue"] = violated
                item["errmsg"] = (f"E11000 duplicate key error collection: {self.full_name} "
                                  f"dup key: {item['keyValue']}")
        return item

    def _violated_index(self, operation: Any) -> tuple[dict[str, int], dict[str, Any]] | None:
        """The unique index the operation collided with, as mongod's ``keyPattern``/``keyValue``:
        ``_id`` when the operation would insert a document whose ``_id`` is stored (a guarded
        upsert whose filter matched nothing), else the first unique index another document
        holds the written values of."""
        with _LOCK:
            document_id = _operation_id(operation)
            selector = getattr(operation, "_filter", None)
            inserts = isinstance(operation, InsertOne) or (
                getattr(operation, "_upsert", False) and self.inner.find_one(selector) is None)
            if inserts and document_id is not None and \
                    self.inner.find_one({"_id": document_id}) is not None:
                return {"_id": 1}, {"_id": document_id}
            written = _written_values(operation)
            for spec in self.inner.index_information().values():
                if not spec.get("unique"):
                    continue
                keys = [name for name, _ in spec["key"]]
                if keys == ["_id"]:
                    continue
                values = {name: _dotted(written, name) for name in keys}
                query = {**values, "_id": {"$ne": document_id}}
                if self.inner.find_one(query) is not None:
                    return {name: 1 for name in keys}, values
        return None

    # -- reads (unescaped) ---------------------------------------------------------------------
    def find(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self.inner.find(*args, **kwargs))

    def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        with _LOCK:
            document = self.inner.find_one(*args, **kwargs)
        return None if document is None else unescape_document(document)

    # -- indexes --------------------------------------------------------------------------------
    def create_index(self, keys: Any, **kwargs: Any) -> str:
        with _LOCK:
            try:
                return str(self.inner.create_index(keys, **kwargs))
            except OperationFailure as error:
                if error.code is None and "different options" in str(error):
                    raise OperationFailure(str(error), code=INDEX_OPTIONS_CONFLICT) from error
                raise

    def index_information(self) -> dict[str, Any]:
        with _LOCK:
            return dict(self.inner.index_information())

    # -- single-document writes, through the same path as bulk_write --------------------------
    def insert_one(self, document: Any, **_: Any) -> Any:
        with _LOCK:
            return self.inner.insert_one(escape_document(document))

    def replace_one(self, selector: Any, document: Any, upsert: bool = False, **_: Any) -> Any:
        with _LOCK:
            return self.inner.replace_one(selector, escape_document(document), upsert=upsert)

    def update_one(self, selector: Any, update: Any, upsert: bool = False, **_: Any) -> Any:
        literal = _literal_replacement(update)
        with _LOCK:
            if literal is None:
                literal = self._merged(selector, update)
            if literal is not None:
                return self.inner.replace_one(selector, escape_document(literal), upsert=upsert)
            return self.inner.update_one(selector, update, upsert=upsert)

    def delete_one(self, selector: Any, **_: Any) -> Any:
        with _LOCK:
            return self.inner.delete_one(selector)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MongomockCollection) and other.inner is self.inner

    def __hash__(self) -> int:
        return id(self.inner)


class _Cursor:
    """mongomock's cursor, read under the lock on first use, documents unescaped."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._documents: Iterator[dict[str, Any]] | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def chained(*args: Any, **kwargs: Any) -> Any:
            answer = attribute(*args, **kwargs)
            return self if answer is self.inner else answer

        return chained

    def __iter__(self) -> _Cursor:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._documents is None:
            with _LOCK:
                documents = list(self.inner)
            self._documents = iter([unescape_document(d) for d in documents])
        return next(self._documents)


# -- helpers -----------------------------------------------------------------------------------
def _literal_replacement(update: Any) -> dict[str, Any] | None:
    """The document of ``[{"$replaceWith": {"$literal": doc}}]``, the planner's only pipeline."""
    if isinstance(update, list) and len(update) == 1:
        stage = update[0].get("$replaceWith") if isinstance(update[0], Mapping) else None
        if isinstance(stage, Mapping) and set(stage) == {"$literal"}:
            return dict(stage["$literal"])
    return None


def _merge_replacement(update: Any) -> dict[str, Any] | None:
    """The parts of ``replicator.writes.merge_pipeline``'s pipeline: ``carried``, ``fields_field``,
    ``document``, ``removed`` (sequence field, sequence number, or None) and ``inserted``
    (sequence field, above, below, or None); None: not it."""
    if not (isinstance(update, list) and len(update) == 1 and isinstance(update[0], Mapping)):
        return None
    stage = update[0].get("$replaceWith")
    parts = stage.get("$mergeObjects") if isinstance(stage, Mapping) else None
    if not isinstance(parts, list) or len(parts) not in (2, 3):
        return None
    try:
        kept, removed, inserted = parts[-2], None, None
        if "$cond" in kept and "$and" in kept["$cond"][0]:
            test, _nothing, kept = kept["$cond"]
            (field_path, above), (_, below) = test["$and"][0]["$gt"], test["$and"][1]["$lt"]
            inserted = (field_path[1:], above, below)
        if "$cond" in kept:
            test, _nothing, kept = kept["$cond"]
            field_path, sequence = test["$lt"]
            removed = (field_path[1:], sequence)
        condition = kept["$arrayToObject"]["$filter"]["cond"]["$eq"][1]["$in"][1]
        listed = (condition["$cond"][1] if "$cond" in condition  # {$isArray: f}, f, []
                  else condition["$ifNull"][0])
        return {"fields_field": listed[1:], "removed": removed, "inserted": inserted,
                "document": dict(parts[-1]["$literal"]),
                "carried": dict(parts[0]["$literal"]) if len(parts) == 3 else {}}
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _operation_id(operation: Any) -> Any:
    selector = getattr(operation, "_filter", None)
    if isinstance(selector, Mapping) and "_id" in selector:
        return selector["_id"]
    document = getattr(operation, "_doc", None)
    if isinstance(document, Mapping):
        return document.get("_id")
    return None


def _written_values(operation: Any) -> dict[str, Any]:
    """The document the operation would leave (enough of it to test unique indexes)."""
    if isinstance(operation, (InsertOne, ReplaceOne)):
        return dict(operation._doc)
    update = getattr(operation, "_doc", None)
    literal = _literal_replacement(update)
    if literal is not None:
        return literal
    merge = _merge_replacement(update)
    if merge is not None:
        return dict(merge["document"])
    written = {k: v for k, v in (getattr(operation, "_filter", None) or {}).items()
               if not k.startswith("$") and not isinstance(v, Mapping)}
    if isinstance(update, Mapping):
        for operator in ("$setOnInsert", "$set"):
            written.update(update.get(operator) or {})
    return written


def _dotted(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _has_decimal(value: Any) -> bool:
    if isinstance(value, Decimal128):
        return True
    if isinstance(value, Mapping):
        return any(_has_decimal(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_decimal(v) for v in value)
    return False


# -- the target backend ------------------------------------------------------------------------
@register_target("mongomock")
class MongomockTarget:
    """mongomock in-process, behind the harness's pymongo-contract adapter (fast; deviations in
    tests/fidelity/behaviours.json)."""

    name = "mongomock"

    def __init__(self) -> None:
        self._client: MongomockClient | None = None

    def start(self) -> None:
        self._client = mongomock_client()

    def stop(self) -> None:
        self._client = None

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        assert self._client is not None
        return self._client[database][name]

    def describe(self) -> str:
        return "mongomock (in-process, through the harness's pymongo-contract adapter)"


def operation_parts(operation: Any) -> Iterator[Mapping[str, Any]]:
    """The documents pymongo encodes for one operation: its filter, then its document(s)."""
    selector = getattr(operation, "_filter", None)
    if isinstance(selector, Mapping):
        yield selector
    document = getattr(operation, "_doc", None)
    if isinstance(document, Mapping):
        yield document
    elif isinstance(document, list):  # a pipeline
        yield from (stage for stage in document if isinstance(stage, Mapping))
