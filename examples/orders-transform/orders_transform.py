"""A user's transform: what the replicator applies to every new image before writing it.

Configured on the Lambda with ``REPLICATOR_TRANSFORMS=orders_transform:shape_order`` (or
``Settings(transforms=("orders_transform:shape_order",))``). It receives the converted document
(DynamoDB JSON already turned into Python/BSON values) and returns the document to store.
"""

from __future__ import annotations

from typing import Any


def shape_order(document: dict[str, Any]) -> dict[str, Any]:
    """Lower-case the customer's email, count the order's lines, drop the internal note."""
    shaped = {name: value for name, value in document.items() if name != "internal_note"}
    if isinstance(shaped.get("email"), str):
        shaped["email"] = shaped["email"].lower()
    shaped["line_count"] = len(shaped.get("lines") or [])
    return shaped
