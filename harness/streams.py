"""The stream reader lives in the core (the standalone poller uses it too); re-exported here."""

from replicator.errors import StreamReadTimeout
from replicator.streams import ShardState, StreamReader, error_code, lineage_order

__all__ = ["ShardState", "StreamReadTimeout", "StreamReader", "error_code", "lineage_order"]
