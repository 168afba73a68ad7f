"""``harness shrink``: delta debugging of a failing recording down to a minimal one.

A recording *fails* for a handler when replaying it (harness/captures/replay.py, the event source mapping's
partial-batch rules) leaves a target that differs from the items the recorded records describe, or
ends in an error. :func:`ddmin` is Zeller and Hildebrandt's minimizing delta debugging
("Simplifying and Isolating Failure-Inducing Input", IEEE TSE 2002): it removes chunks of records,
then single records, while the rest still fails, and returns a 1-minimal subset (removing any one
more record makes it pass).

A subset of a stream has no captured final state, so the expected items come from the records
themselves (:func:`items_from_records`): per key, the NewImage of its last record, or nothing after
a REMOVE. On the whole recording that must agree with ``final_items.json`` when there is one (a
recording whose stream view has no new images cannot be shrunk this way, and is refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from harness.captures.format import Capture
from harness.captures.recording import Recording

T = TypeVar("T")


def ddmin(items: Sequence[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """A 1-minimal failing subsequence of ``items`` (order kept); ``fails(items)`` must be true.

    ``fails`` is called at most once per distinct subsequence (answers are cached).
    """
    answers: dict[tuple[int, ...], bool] = {}
    positions = {id(item): n for n, item in enumerate(items)}

    def test(candidate: list[T]) -> bool:
        signature = tuple(positions[id(item)] for item in candidate)
        if signature not in answers:
            answers[signature] = fails(candidate)
        return answers[signature]

    current = list(items)
    if not test(current):
        raise ValueError("the input does not fail: nothing to shrink")
    parts = 2
    while len(current) >= 2:
        chunks = _split(current, parts)
        for chunk in chunks:  # reduce to a chunk
            if test(chunk):
                current, parts = chunk, 2
                break
        else:
            for index in range(len(chunks)):  # reduce to a complement
                complement = [x for n, c in enumerate(chunks) if n != index for x in c]
                if test(complement):
                    current, parts = complement, max(parts - 1, 2)
                    break
            else:
                if parts >= len(current):  # every single record is needed: 1-minimal
                    break
                parts = min(len(current), parts * 2)
    return current


def _split(sequence: list[T], parts: int) -> list[list[T]]:
    size, extra = divmod(len(sequence), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(sequence[start:end])
        start = end
    return [c for c in chunks if c]


def items_from_records(records: Sequence[dict[str, Any]], key_schema: Sequence[str]) -> list[dict[str, Any]]:
    """The table's items after ``records`` (in stream order): per key the last NewImage."""
    state: dict[str, dict[str, Any] | None] = {}
    for record in records:
        body = record.get("dynamodb") or {}
        keys = body.get("Keys") or {}
        key = json.dumps([keys.get(name) for name in key_schema], sort_keys=True)
        if record.get("eventName") == "REMOVE":
            state[key] = None
        elif "NewImage" in body:
            state[key] = body["NewImage"]
        else:
            raise ValueError(
                "a record without NewImage: the stream view must be NEW_IMAGE or NEW_AND_OLD_IMAGES "
                "for a recording to be shrunk"
            )
    return [image for image in state.values() if image is not None]


@dataclass
class ShrinkResult:
    original: int
    kept: list[int]  # positions in the original recording
    recording: Recording
    trials: int
    reason: str  # why the minimal recording fails


def diverges(
    capture: Capture, handler: str, collection_factory: Callable[[], Any], *, batch_size: int = 100,
) -> tuple[bool, str]:
    """Replay ``capture`` into a fresh collection: (fails, why)."""
    from harness.captures.replay import replay

    result = replay(capture, collection_factory(), handler_name=handler, batch_size=batch_size)
    if result.error:
        return True, result.error
    if result.diff is not None and not result.diff.converged:
        diff = result.diff
        paths = sorted({f.path for d in diff.changed for f in d.fields})
        return True, (f"diverges: {len(diff.missing)} missing, {len(diff.extra)} extra, "
                      f"{len(diff.changed)} changed (fields: {', '.join(paths[:8])})")
    return False, "converges"


def shrink(
    recording: Recording,
    handler: str,
    *,
    collection_factory: Callable[[], Any] | None = None,
    batch_size: int = 100,
) -> ShrinkResult:
    """The smallest subset of the recording's records that still fails for ``handler``."""
    if collection_factory is None:
        collection_factory = _mongomock_collections()
    schema = recording.table.key_schema
    if recording.final_items is not None:
        derived = items_from_records(recording.records, schema)
        if not _same_items(derived, recording.final_items, schema):
            raise ValueError(
                "the recorded final items are not what the records describe (a trimmed or partial "
                "stream?): shrinking needs a recording from the table's creation on"
            )
    trials = 0

    def capture_of(positions: list[int]) -> Capture:
        records = [recording.records[i] for i in positions]
        return Capture(recording.table, {"Records": records}, items_from_records(records, schema))

    def fails(positions: list[int]) -> bool:
        nonlocal trials
        trials += 1
        return diverges(capture_of(positions), handler, collection_factory,
                        batch_size=batch_size)[0]

    kept = ddmin(list(range(len(recording.records))), fails)
    _, reason = diverges(capture_of(kept), handler, collection_factory, batch_size=batch_size)
    minimal = capture_of(kept)
    metadata = {**recording.metadata, "shrunk": {
        "handler": handler, "original_records": len(recording.records), "kept_positions": kept,
        "trials": trials, "reason": reason,
    }}
    metadata.pop("shards", None)  # positions changed; the subset is one shard's worth of order
    return ShrinkResult(len(recording.records), kept, replace(
        recording, records=minimal.records, final_items=minimal.final_items, metadata=metadata,
    ), trials, reason)


def _same_items(
    derived: Sequence[dict[str, Any]], recorded: Sequence[dict[str, Any]], schema: Sequence[str]
) -> bool:
    """Do the items describe the same documents? Compared as the replicator converts them, since
    DynamoDB Local writes an empty map inside a list as ``{}`` in stream images but ``{"M": {}}``
    in a scan (measured on DynamoDB Local 3.3.0)."""
    from harness.convergence import compare, expected_documents
    from replicator.expected import planner_for
    from replicator.settings import Settings

    planner = planner_for(Settings(key_schema=tuple(schema)))
    actual = [document for document, _ in expected_documents(recorded, planner)]
    return compare(expected_documents(derived, planner), actual).converged


def _mongomock_collections() -> Callable[[], Any]:
    from harness.backends.mongomock_target import mongomock_client

    client: Any = mongomock_client()
    count = 0

    def fresh() -> Any:
        nonlocal count
        count += 1
        return client["shrink"][f"trial{count}"]

    return fresh


def shrink_directory(
    directory: Path, out: Path, handler: str, *, batch_size: int = 100,
    collection_factory: Callable[[], Any] | None = None,
) -> ShrinkResult:
    """Shrink the recording in ``directory`` and write the minimal one to ``out``."""
    from harness.captures.recording import read_recording, write_recording

    result = shrink(read_recording(directory), handler, batch_size=batch_size,
                    collection_factory=collection_factory)
    write_recording(result.recording, out)
    return result
