"""The original design, re-implemented faithfully so its defects can be shown side by side.

Per record: convert the image with a lossy DynamoDB-JSON conversion (numbers with a fraction or an
exponent become floats, B stays base64 text, sets become lists in arrival order), set ``_id`` from
the ``id`` attribute, apply the custom transformations, then ``update_one({_id}, {"$set": doc},
upsert=True)`` for INSERT/MODIFY and ``delete_one({_id})`` for REMOVE, all in one client session
where the server has sessions. Returns ``{"statusCode": 500}`` if any record failed, else 200 --
which Lambda's event source mapping does not read as a failure, so failed records are dropped.
Do not "fix" anything here: the point is to show what goes wrong.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from replicator.transforms import example as example_transform

log = logging.getLogger("harness.baseline")


def lossy_value(attribute: Mapping[str, Any]) -> Any:
    """The dynamodb-json style conversion the original used."""
    if not attribute:
        return {}  # dynamodb-json passes DynamoDB Local's bare {} through
    ((tag, value),) = attribute.items()
    if tag == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if tag in ("S", "B", "BOOL"):
        return value
    if tag == "NULL":
        return None
    if tag in ("SS", "BS"):
        return list(value)
    if tag == "NS":
        return [int(v) if v.lstrip("-").isdigit() else float(v) for v in value]
    if tag == "M":
        return {k: lossy_value(v) for k, v in value.items()}
    if tag == "L":
        return [lossy_value(v) for v in value]
    raise ValueError(f"unknown type {tag}")


def lossy_image(image: Mapping[str, Any]) -> dict[str, Any]:
    return {k: lossy_value(v) for k, v in image.items()}


class OriginalHandler:
    """``OriginalHandler(collection).handle(event)`` -> ``{"statusCode": 200 | 500}``."""

    def __init__(self, collection: Any, *, transform: bool = False, id_field: str = "id") -> None:
        self.collection = collection
        self.transform = transform
        self.id_field = id_field
        self.round_trips = 0

    def handle(self, event: Mapping[str, Any], context: Any = None) -> dict[str, int]:
        failed = False
        with self._session() as session:
            for record in event.get("Records", []):
                try:
                    self._apply(record, session)
                except Exception as error:  # the original caught everything and went on
                    log.error("baseline: record failed: %s", error)
                    failed = True
        return {"statusCode": 500 if failed else 200}

    def _apply(self, record: Mapping[str, Any], session: Any) -> None:
        body = record["dynamodb"]
        keys = lossy_image(body["Keys"])
        document_id = keys.get(self.id_field, next(iter(keys.values())))
        self.round_trips += 1
        if record["eventName"] in ("INSERT", "MODIFY"):
            document = lossy_image(body["NewImage"])
            if self.transform:
                document = example_transform(document)
            document["_id"] = document_id
            self.collection.update_one(
                {"_id": document_id}, {"$set": document}, upsert=True, session=session
            )
        elif record["eventName"] == "REMOVE":
            self.collection.delete_one({"_id": document_id}, session=session)

    def _session(self) -> Any:
        client = getattr(getattr(self.collection, "database", None), "client", None)
        try:
            return client.start_session()  # type: ignore[union-attr]
        except Exception:  # a target without sessions (e.g. an in-memory stand-in)
            return contextlib.nullcontext(None)
