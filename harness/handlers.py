"""Handlers the tools can drive: the project's, the original-design baseline, or any function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.baselines.original import OriginalHandler
from replicator.core import Replicator
from replicator.expected import load_callable
from replicator.readback import ItemReader
from replicator.settings import Settings

Handler = Callable[[dict[str, Any]], Any]

BUILTIN = {
    "replicator": "the project's core (Replicator.handle)",
    "baseline": "the original design: $set upserts per record, statusCode 500 on failure",
}


def make_handler(
    name: str,
    collection: Any,
    settings: Settings,
    *,
    item_reader: ItemReader | None = None,
) -> Handler:
    """``replicator``, ``baseline``, or ``module:function`` (called as ``function(event, None)``)."""
    if name == "replicator":
        return Replicator(collection, settings, item_reader=item_reader).handle
    if name == "baseline":
        partition = settings.key_schema[0] if settings.key_schema else "id"
        return OriginalHandler(collection, id_field=partition).handle
    function = load_callable(name)
    return lambda event: function(event, None)
