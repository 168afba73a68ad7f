"""What the event source mapping emulation reports (harness/esm/mapping.py fills it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.histogram import Histogram

__all__ = [
    "FUNCTION_ERROR", "LOG_SAMPLE", "MALFORMED_RESPONSE", "PARTIAL_FAILURE", "RECORD_AGE_EXCEEDED",
    "RETRY_ATTEMPTS_EXHAUSTED", "SUCCESS", "Discard", "DriverReport", "Invocation",
]

#: Invocation outcomes, as logged.
SUCCESS = "success"
PARTIAL_FAILURE = "partial_failure"
FUNCTION_ERROR = "function_error"
MALFORMED_RESPONSE = "malformed_response"

#: ``requestContext.condition`` of on-failure records.
RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"

#: invocations kept in ``DriverReport.log`` without ``keep_records`` (the first ones; counts and
#: handler times of all of them are aggregated)
LOG_SAMPLE = 200


# -- the report ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Invocation:
    """One call of the handler."""

    shard_id: str
    lane: int
    first_sequence: str
    last_sequence: str
    size: int
    #: 1 for a batch's first invocation, n for its (n-1)th retry (bisected halves inherit it)
    attempt: int
    outcome: str
    started_at: float
    duration_s: float
    error: str | None = None
    #: with a partial failure: the sequence number redelivery starts from
    retry_from: str | None = None


@dataclass(frozen=True)
class Discard:
    """Records the ESM gave up on (their on-failure record is in ``DriverReport.on_failure``)."""

    shard_id: str
    lane: int
    sequence_numbers: tuple[str, ...]
    condition: str
    invocations: int
    #: dropped by ``retry_safety_limit`` standing in for infinite retries (AWS would go on)
    safety_cap: bool = False
    last_outcome: str | None = None
    last_error: str | None = None


@dataclass
class DriverReport:
    """Everything the mapping did so far (``drain()`` returns the same, growing, object).

    Its size does not grow with the records fed unless ``keep_records`` is set: counts, the
    per-outcome invocation counts, handler time per invocation and each record's wait (fed ->
    completed) in streaming histograms, the first :data:`LOG_SAMPLE` invocations, and the discards
    (failures only). ``keep_records=True`` (tests, chaos) also keeps every invocation in ``log``,
    ``completed_at`` and ``deliveries``.
    """

    invocations: int = 0
    records_fed: int = 0
    #: records handed to the handler, redeliveries included
    records_delivered: int = 0
    #: invocations that were retries (after a function error, a partial or malformed response)
    retries: int = 0
    bisections: int = 0
    discarded_records: int = 0
    safety_cap_hits: int = 0
    #: on-failure invocation records, shaped like the SQS/SNS destination's messages
    on_failure: list[dict[str, Any]] = field(default_factory=list)
    discarded: list[Discard] = field(default_factory=list)
    #: every invocation with ``keep_records``, else the first LOG_SAMPLE
    log: list[Invocation] = field(default_factory=list)
    #: with ``keep_records``: SequenceNumber -> clock time the invocation that completed it ended
    completed_at: dict[str, float] = field(default_factory=dict)
    #: with ``keep_records``: (completion time, the record as fed) in completion order
    deliveries: list[tuple[float, Mapping[str, Any]]] = field(default_factory=list)
    keep_records: bool = False
    records_completed: int = 0
    outcome_counts: dict[str, int] = field(default_factory=dict)
    #: seconds per handler invocation (the function's own time, emulator overhead excluded)
    handler_s: Histogram = field(default_factory=Histogram)
    #: seconds from feed to completion, per completed record (queueing + batching + handler)
    wait_s: Histogram = field(default_factory=Histogram)

    def outcomes(self) -> dict[str, int]:
        return dict(self.outcome_counts)

    def summary(self) -> dict[str, Any]:
        return {
            "invocations": self.invocations,
            "records_fed": self.records_fed,
            "records_delivered": self.records_delivered,
            "records_completed": self.records_completed,
            "retries": self.retries,
            "bisections": self.bisections,
            "discarded_records": self.discarded_records,
            "on_failure_records": len(self.on_failure),
            "safety_cap_hits": self.safety_cap_hits,
            "outcomes": self.outcomes(),
            "mean_batch_size": (
                round(self.records_delivered / self.invocations, 2) if self.invocations else None
            ),
            "max_invocation_s": (
                round(self.handler_s.max, 6) if self.handler_s.max is not None else None
            ),
            "handler_s": self.handler_s.as_dict(),
            "handler_total_s": round(self.handler_s.total, 3),
            "wait_s": self.wait_s.as_dict(),
        }
