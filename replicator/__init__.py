"""Lossless, idempotent replication of DynamoDB Streams changes into MongoDB.

>>> from replicator import Replicator, Settings
>>> Replicator(collection, Settings()).handle(event)  # doctest: +SKIP
{'batchItemFailures': []}
"""

from replicator.core import BatchResult, Replicator
from replicator.errors import (
    ConfigurationError,
    ConversionError,
    MalformedRecordError,
    RecordError,
    ReplicationError,
    TransformError,
    UnsupportedRecordError,
)
from replicator.settings import SEQUENCE_FIELD, Settings

__all__ = [
    "SEQUENCE_FIELD",
    "BatchResult",
    "ConfigurationError",
    "ConversionError",
    "MalformedRecordError",
    "RecordError",
    "ReplicationError",
    "Replicator",
    "Settings",
    "TransformError",
    "UnsupportedRecordError",
]
