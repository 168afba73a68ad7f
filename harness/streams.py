"""The stream reader lives in the core (the standalone poller uses it too); re-exported here, with
the one question the dev kit asks of it when feeding the event source mapping emulation."""

from replicator.errors import StreamReadTimeout
from replicator.poller.streams import ShardState, StreamReader, error_code, lineage_order

__all__ = [
    "ShardState",
    "StreamReadTimeout",
    "StreamReader",
    "error_code",
    "lineage_order",
    "parent_of",
]


def parent_of(reader: StreamReader, shard_id: str) -> str | None:
    """The parent shard of a shard the reader listed (None for a root or an unknown shard): the
    ESM emulation holds a child's records until its parent's are delivered, as Lambda does."""
    state = reader.state.get(shard_id)
    return state.parent_id if state is not None else None
