"""Example transforms, off by default.

Enable with ``Settings(transforms=("replicator.transforms.example",))`` (Lambda:
``REPLICATOR_TRANSFORMS=replicator.transforms.example``). A transform takes the converted document
(without ``_id``) and returns the document to write; see Settings.transforms.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def example(document: dict[str, Any]) -> dict[str, Any]:
    """The original design's custom transformation (harness/baselines/original.py applies it
    too): default ``age`` to 0, ``created_at`` epoch seconds -> a UTC date."""
    if "age" not in document:
        document["age"] = 0
    if isinstance(document.get("created_at"), (int, float)):
        document["created_at"] = datetime.fromtimestamp(document["created_at"], tz=timezone.utc)
    return document


__all__ = ["example"]
