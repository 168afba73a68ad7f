"""The only place that writes a plan to MongoDB: one ``bulk_write`` per collection and batch.

Server errors are mapped back to the planned writes by their index in the bulk (as pymongo's own
``bulk_shared`` does), so the caller learns exactly which sequence numbers did not land.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError
from pymongo.operations import DeleteOne, ReplaceOne, UpdateOne

from replicator.plan import PlannedWrite

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
# Escape for $-prefixed top-level names on a target that cannot store them (mongomock); see
# escape_field_name. FULLWIDTH DOLLAR SIGN, never produced by the replicator otherwise.
DOLLAR_ESCAPE = "\uff04"


@dataclass
class WriteResult:
    """What happened to each planned write."""

    applied: list[PlannedWrite] = field(default_factory=list)
    #: a newer version was already there (stale-write guard): nothing to do, not a failure
    stale: list[PlannedWrite] = field(default_factory=list)
    failed: list[tuple[PlannedWrite, str]] = field(default_factory=list)
    round_trips: int = 0


def write(collection: Any, writes: Sequence[PlannedWrite]) -> WriteResult:
    """Send ``writes`` (all for ``collection``) in one unordered bulk write; classify results."""
    result = WriteResult()
    if not writes:
        return result
    if is_mongomock(collection):
        return _write_one_by_one(collection, writes)
    operations = [w.operation for w in writes]
    result.round_trips = 1
    try:
        # Unordered: the plan holds one write per _id, so no write depends on another, and one
        # failure must not hold back the others.
        collection.bulk_write(operations, ordered=False)
    except BulkWriteError as error:
        failed_at: dict[int, str] = {}
        for item in error.details.get("writeErrors", []):
            failed_at[item["index"]] = _describe(item)
        concern = error.details.get("writeConcernErrors") or []
        for index, planned in enumerate(writes):
            if index in failed_at:
                item = next(e for e in error.details["writeErrors"] if e["index"] == index)
                if _is_stale(planned, item.get("code"), item.get("keyPattern")):
                    result.stale.append(planned)
                else:
                    result.failed.append((planned, failed_at[index]))
            elif concern:
                # Applied but not acknowledged with the asked write concern: retry (safe, guarded).
                result.failed.append((planned, f"write concern error: {concern[0].get('errmsg')}"))
            else:
                result.applied.append(planned)
        return result
    except PyMongoError as error:
        message = f"{type(error).__name__}: {error}"
        result.failed.extend((planned, message) for planned in writes)
        return result
    result.applied.extend(writes)
    return result


def _is_stale(planned: PlannedWrite, code: Any, key_pattern: Any) -> bool:
    if code != DUPLICATE_KEY or not isinstance(planned.operation, (ReplaceOne, UpdateOne)):
        return False
    guarded = "$or" in (planned.operation._filter or {})
    return guarded and (key_pattern is None or dict(key_pattern) == {"_id": 1})


def _describe(item: Mapping[str, Any]) -> str:
    return f"code {item.get('code')}: {item.get('errmsg', '')}"


# -- mongomock ---------------------------------------------------------------------------------
# mongomock 4.3's bulk_write breaks with pymongo >= 4.11 (its add_update() rejects the new `sort`
# argument), and we do not hold the production pymongo back for a mock. So on mongomock the plan's
# operations are applied one by one with the semantics of an unordered bulk write: every operation
# is tried, and each failure is reported at its index. A lock makes each write atomic against the
# harness's parallel batches, as a server would.
_MONGOMOCK_LOCK = threading.RLock()


def is_mongomock(collection: Any) -> bool:
    return type(collection).__module__.startswith("mongomock")


def _write_one_by_one(collection: Any, writes: Sequence[PlannedWrite]) -> WriteResult:
    result = WriteResult(round_trips=len(writes))
    for planned in writes:
        operation = planned.operation
        try:
            with _MONGOMOCK_LOCK:
                _apply_on_mongomock(collection, operation)
        except DuplicateKeyError as error:
            if _is_stale(planned, error.code, (error.details or {}).get("keyPattern")):
                result.stale.append(planned)
            else:
                result.failed.append((planned, f"{type(error).__name__}: {error}"))
        except (PyMongoError, ValueError, TypeError, NotImplementedError) as error:
            result.failed.append((planned, f"{type(error).__name__}: {error}"))
        else:
            result.applied.append(planned)
    return result


def _apply_on_mongomock(collection: Any, operation: Any) -> None:
    selector = operation._filter
    if isinstance(operation, ReplaceOne):
        # Escaped too, so that a stored name that merely starts with the escape reads back right.
        collection.replace_one(selector, escape_document(operation._doc), upsert=operation._upsert)
    elif isinstance(operation, DeleteOne):
        collection.delete_one(selector)
    elif isinstance(operation, UpdateOne):
        document = _literal_replacement(operation._doc)
        if document is None:
            collection.update_one(selector, operation._doc, upsert=operation._upsert)
            return
        # mongomock implements neither $replaceWith nor $-prefixed top-level names at all, so
        # this is the one place a target truly cannot store the names: escape them, reversibly
        # (unescape_document), and say so.
        escaped = escape_document(document)
        log.warning(
            "mongomock cannot store $-prefixed top-level field names; stored %s as %s",
            sorted(k for k in document if k.startswith("$")),
            sorted(k for k in escaped if k.startswith(DOLLAR_ESCAPE)),
        )
        collection.replace_one(selector, escaped, upsert=operation._upsert)
    else:  # pragma: no cover - the planner makes no other operation
        raise TypeError(f"unexpected operation {operation!r}")


def _literal_replacement(update: Any) -> dict[str, Any] | None:
    """The document of ``[{"$replaceWith": {"$literal": doc}}]``, the planner's only pipeline."""
    if isinstance(update, list) and len(update) == 1:
        stage = update[0].get("$replaceWith") if isinstance(update[0], Mapping) else None
        if isinstance(stage, Mapping) and set(stage) == {"$literal"}:
            return dict(stage["$literal"])
    return None


def escape_field_name(name: str) -> str:
    """``$x`` -> ``＄x``; a name already starting with ``＄`` gets one more, so it reverses."""
    if name.startswith("$") or name.startswith(DOLLAR_ESCAPE):
        return DOLLAR_ESCAPE + name[1:] if name.startswith("$") else DOLLAR_ESCAPE + name
    return name


def unescape_field_name(name: str) -> str:
    if not name.startswith(DOLLAR_ESCAPE):
        return name
    rest = name[1:]
    return rest if rest.startswith(DOLLAR_ESCAPE) else "$" + rest


def escape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {escape_field_name(k): v for k, v in document.items()}


def unescape_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {unescape_field_name(k): v for k, v in document.items()}
