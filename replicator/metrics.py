"""The figures of a batch, once, for every exporter: CloudWatch (the Lambda handler's Embedded
Metric Format line, :mod:`replicator.lambda_telemetry`) and Prometheus (the standalone poller,
:mod:`replicator.poller.metrics`). docs/metrics.md lists them for operators.

Pure: no third-party import, so ``from replicator import Replicator`` stays free of Powertools and
prometheus_client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from replicator.core import BatchResult

#: CloudWatch's namespace when POWERTOOLS_METRICS_NAMESPACE is not set (alarms use the same)
DEFAULT_NAMESPACE = "DdbMongoReplicator"
#: the dimensions of every CloudWatch metric, and the labels of every Prometheus series
DIMENSIONS = ("Table", "Collection")


@dataclass(frozen=True)
class Figure:
    """One figure of a batch: its CloudWatch name and unit, its Prometheus name (a counter gets
    ``_total`` appended by prometheus_client) and kind, and how to read it from a BatchResult
    (None: nothing to report for this batch, e.g. no lag when nothing was applied)."""

    name: str
    unit: Literal["Count", "Milliseconds"]
    prometheus: str
    kind: Literal["counter", "histogram", "gauge"]
    description: str
    value: Callable[[BatchResult], float | None]


def _lag_ms(result: BatchResult) -> float | None:
    lag = result.replication_lag_s
    return None if lag is None else lag * 1000.0


FIGURES: tuple[Figure, ...] = (
    Figure("Records", "Count", "replicator_records", "counter",
           "records in the batch", lambda r: r.records),
    Figure("Applied", "Count", "replicator_applied", "counter",
           "writes MongoDB acknowledged (one item's records in a batch are one write)",
           lambda r: r.applied),
    Figure("AlreadyNewer", "Count", "replicator_already_newer", "counter",
           "writes refused because the stored version is newer (stale, harmless)",
           lambda r: r.stale),
    Figure("Quarantined", "Count", "replicator_quarantined", "counter",
           "records kept in the quarantine collection (they can never be applied as they are)",
           lambda r: len(r.quarantined)),
    Figure("Failed", "Count", "replicator_failed", "counter",
           "records reported for redelivery (a transient failure; retried from the lowest)",
           lambda r: r.failed),
    Figure("RoundTrips", "Count", "replicator_round_trips", "counter",
           "MongoDB commands the batch sent", lambda r: r.round_trips),
    Figure("BatchDuration", "Milliseconds", "replicator_batch_duration_seconds", "histogram",
           "time to process the batch", lambda r: r.duration_s * 1000.0),
    Figure("ReplicationLag", "Milliseconds", "replicator_replication_lag_seconds", "gauge",
           "end of the batch minus the newest ApproximateCreationDateTime applied "
           "(none when nothing was applied)", _lag_ms),
)
