"""Sharded targets: a document's shard key values, when a change moves them, and the stream views
that cannot say where a document is stored (see plan.py's module doc for how the planner uses
them, apply.py for how a move is written)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bson

from replicator.errors import ConfigurationError, UnsupportedRecordError
from replicator.events import BadRecord, Change, StreamViewType
from replicator.settings import Settings


def shard_values(document: Mapping[str, Any], shard_key: Sequence[str]) -> dict[str, Any]:
    """``{field: value}`` of the shard key in ``document`` (dotted paths; missing -> None)."""
    return {name: _get_path(document, name) for name in shard_key}


def same_shard_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Strict: same fields, BSON types and values (1 and 1.0 differ). A doubtful case becomes a
    move, which is correct in every case, only slower."""
    return list(a) == list(b) and bson.encode({"v": list(a.values())}) == bson.encode(
        {"v": list(b.values())}
    )


def movable_shard_key(shard_key: Sequence[str], key_names: Sequence[str]) -> list[str]:
    """The shard key fields that are not table key attributes (their value can change)."""
    keys = set(key_names) | {"_id"}
    return [name for name in shard_key if name.split(".")[0] not in keys]


def check_stream_view(
    settings: Settings, view: StreamViewType | None, key_names: Sequence[str]
) -> None:
    """ConfigurationError when a shard key field can change but the stream has no old images."""
    if not settings.shard_key or view not in (StreamViewType.NEW_IMAGE, StreamViewType.KEYS_ONLY):
        return
    names = tuple(settings.key_schema or key_names)
    movable = movable_shard_key(settings.shard_key, names)
    if movable:
        raise ConfigurationError(
            f"shard key field(s) {movable} are not attributes of the table key {list(names)}, so "
            f"a change can move a document to another shard key value, and the stream's view type "
            f"{view.value} carries no old image to say where the document is stored now: set the "
            "stream view type to NEW_AND_OLD_IMAGES (or OLD_IMAGE with an item reader), or shard "
            "the collection on table key attributes"
        )


def _get_path(document: Mapping[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None  # MongoDB treats a missing shard key field as null
        value = value[part]
    return value




def screen_stream_views(
    settings: Settings, changes: list[Change], bad: list[BadRecord]
) -> list[Change]:
    """With a shard key that can change, a record from a stream without old images cannot say
    where its document is stored: quarantined with the fix, before any write. Judged per record
    (a single KEYS_ONLY record must not stop a batch)."""
    if not settings.shard_key:
        return changes
    kept = []
    for change in changes:
        try:
            if change.stream_view_type is not None:
                check_stream_view(settings, change.stream_view_type, tuple(change.keys))
        except ConfigurationError as problem:
            error = UnsupportedRecordError(
                str(problem), problem="stream view without old images for a movable shard key",
                field_path="dynamodb.StreamViewType",
            )
            bad.append(BadRecord.of(change, error))
            continue
        kept.append(change)
    return kept
