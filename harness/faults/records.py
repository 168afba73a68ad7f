"""Records made malformed in flight (missing image, wrong type, unknown type tag, truncated
number, no sequence number, not an object), keeping their identity so quarantine can be checked."""

from __future__ import annotations

import copy
import random
from typing import Any

CORRUPTIONS = ("missing_new_image", "wrong_type", "unknown_tag", "truncated_number",
               "missing_sequence", "not_an_object")


def corrupt_record(record: dict[str, Any], rng: random.Random) -> tuple[str, Any]:
    """A corrupted copy of a Lambda record and the kind of corruption applied."""
    kind = rng.choice(CORRUPTIONS)
    bad = copy.deepcopy(record)
    body = bad.setdefault("dynamodb", {})
    bad["eventID"] = f"corrupt-{kind}-{record.get('eventID', '')}"
    image = body.get("NewImage") or body.get("OldImage") or body.get("Keys")
    if kind == "missing_new_image" and bad.get("eventName") in ("INSERT", "MODIFY"):
        body.pop("NewImage", None)
        body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    elif kind == "wrong_type":
        body["Keys"] = {name: {"S": 12345} for name in body.get("Keys", {"id": 1})}
    elif kind == "unknown_tag" and image:
        image[next(iter(image))] = {"XYZ": "?"}
        body["Keys"] = {name: {"XYZ": "?"} for name in body.get("Keys", {"id": 1})}
    elif kind == "truncated_number":
        body["Keys"] = {name: {"N": "12e"} for name in body.get("Keys", {"id": 1})}
    elif kind == "missing_sequence":
        body.pop("SequenceNumber", None)
    else:
        return "not_an_object", ["not", "a", "record"]
    return kind, bad
