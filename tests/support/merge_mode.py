"""Reading a merge-mode document back in tests: the table's part and another application's."""

from __future__ import annotations

from typing import Any

from replicator.settings import SEQUENCE_FIELD


def stored(collection: Any, id_: Any = "u1") -> dict[str, Any] | None:
    """The document of ``id_`` without its sequence field (which differs by batching), or None."""
    document = collection.find_one({"_id": id_})
    if document is not None:
        document.pop(SEQUENCE_FIELD, None)
    return document


def app_fields(document: dict[str, Any] | None) -> dict[str, Any]:
    """The fields another application wrote (named ``app...`` in these tests)."""
    return {k: v for k, v in (document or {}).items() if k.startswith("app")}
