"""What the quarantine keeps of a record that can never be applied: the raw record (exact JSON
text), the error and the time, as one upsert by a content-addressed ``_id``; and the error of a
write MongoDB refused for good (:class:`WriteRejectedError`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from replicator import apply
from replicator.convert import _encodable
from replicator.errors import RecordError
from replicator.events import BadRecord
from replicator.writes import PlannedWrite


class WriteRejectedError(RecordError):
    """MongoDB or the client refused a planned write for good (see apply.Rejection)."""

    def __init__(self, rejection: apply.Rejection, *, covered: Sequence[str] = (),
                 **where: Any) -> None:
        self.code = rejection.code
        self.kind = rejection.kind
        self.covered = tuple(covered)
        super().__init__(f"write rejected ({rejection.kind}): {rejection.reason}", **where)

    def as_dict(self) -> dict[str, object]:
        details = super().as_dict()
        details.update(code=self.code, kind=self.kind, covered_sequence_numbers=list(self.covered))
        return details


def record_path(root: str, document_path: str) -> str:
    """A document path -> the record's field path: ``_id`` comes from Keys, the rest from the
    image the write carries."""
    if not document_path:
        return ""
    if document_path == "_id" or document_path.startswith("_id."):
        return "dynamodb.Keys"
    return f"{root}.{document_path}"


def quarantine_document(bad: BadRecord) -> dict[str, Any]:
    """What the quarantine keeps: the raw record (exact JSON text), the error and the time."""
    error = bad.error
    details = error.as_dict() if hasattr(error, "as_dict") else {
        "type": type(error).__name__, "message": str(error)}
    return {
        "_id": _quarantine_id(bad),
        "sequence_number": _text_safe(bad.sequence_number),
        "index": bad.index,
        "error": _text_safe(details),
        "raw_record": _raw_json(bad.raw),
        "quarantined_at": datetime.now(timezone.utc),
    }


def quarantine_write(bad: BadRecord) -> PlannedWrite:
    """Upsert by a content-addressed id; a redelivery keeps the time it was first quarantined."""
    document = quarantine_document(bad)
    first_seen = document.pop("quarantined_at")
    document_id = document.pop("_id")
    return PlannedWrite.update(
        {"_id": document_id},
        {"$set": document, "$setOnInsert": {"quarantined_at": first_seen}},
        (bad.sequence_number or "",),
    )


def _quarantine_id(bad: BadRecord) -> str:
    """Stable across redeliveries (a replayed batch does not quarantine a record twice), and
    distinct for distinct records even when they claim the same sequence number."""
    # surrogatepass: a lone surrogate (crafted input, json.loads accepts it) must not raise here
    digest = hashlib.sha256(_raw_json(bad.raw).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_text_safe(bad.sequence_number) or 'no-sequence'}:{digest}"


def _raw_json(raw: Any) -> str:
    """The raw record as JSON text that BSON can store: readable (non-ASCII kept) when UTF-8 can
    encode it, else with every non-ASCII character escaped (a lone surrogate); any depth."""
    try:
        text = json.dumps(raw, default=_json_fallback, sort_keys=True, ensure_ascii=False)
    except RecursionError:  # nesting beyond the interpreter's limit (a crafted record)
        return _deep_json(raw)
    except (TypeError, ValueError):  # non-str keys of mixed types, a cycle
        return str(_text_safe(repr(raw)))
    if _encodable(text):
        return text
    # A lone surrogate (crafted input) cannot be stored as UTF-8: keep the exact record as JSON
    # with \u escapes, which json.loads turns back into the same string.
    return json.dumps(raw, default=_json_fallback, sort_keys=True, ensure_ascii=True)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return {"$binary_base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _deep_json(raw: Any) -> str:
    """``json.dumps(raw, sort_keys=True, ensure_ascii=True)`` without recursion."""
    parts: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, raw)]
    while stack:
        literal, item = stack.pop()
        if literal:
            parts.append(item)
            continue
        todo: list[tuple[bool, Any]] = []
        if isinstance(item, Mapping):
            entries = sorted(((str(k), v) for k, v in item.items()), key=lambda kv: kv[0])
            todo.append((True, "{"))
            for n, (name, value) in enumerate(entries):
                todo.append((True, ("" if n == 0 else ", ") + json.dumps(name) + ": "))
                todo.append((False, value))
            todo.append((True, "}"))
        elif isinstance(item, (list, tuple)):
            todo.append((True, "["))
            for n, value in enumerate(item):
                if n:
                    todo.append((True, ", "))
                todo.append((False, value))
            todo.append((True, "]"))
        else:
            fallback = _json_fallback(item) if not isinstance(
                item, (str, int, float, bool, type(None))) else item
            todo.append((True, json.dumps(fallback, default=repr)))
        stack.extend(reversed(todo))
    return "".join(parts)


def _text_safe(value: Any) -> Any:
    """Strings that UTF-8 (hence BSON) cannot hold, made storable (an error message may quote a
    lone surrogate or a NUL of the record it is about)."""
    if isinstance(value, str):
        if _encodable(value):
            return value
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(_text_safe(k)).replace("\x00", "\\x00"): _text_safe(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_safe(v) for v in value]
    return value


