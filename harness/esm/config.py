"""The event source mapping's settings for DynamoDB Streams (harness/esm/mapping.py emulates them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_PAYLOAD_BYTES", "EsmConfig"]

#: Lambda's synchronous invocation payload limit, which also caps a stream batch.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EsmConfig:
    """The ESM settings that apply to DynamoDB Streams, with AWS's defaults and ranges.

    AWS names: BatchSize, MaximumBatchingWindowInSeconds, ParallelizationFactor,
    StartingPosition, MaximumRetryAttempts, MaximumRecordAgeInSeconds, BisectBatchOnFunctionError,
    FunctionResponseTypes=["ReportBatchItemFailures"] (see :meth:`from_aws`).

    ``maximum_retry_attempts=-1`` (AWS: retry until the records expire, 24 h on DynamoDB Streams)
    is capped here at ``retry_safety_limit`` retries so that a run always ends; a batch dropped by
    that cap is counted in :attr:`DriverReport.safety_cap_hits` and logged as a warning.
    ``starting_position`` is validated and kept for the stream reader: the driver only sees the
    records it is fed. ``maximum_batching_window_s`` accepts fractions (AWS takes whole seconds)
    so that dev runs stay short.
    """

    batch_size: int = 100
    maximum_batching_window_s: float = 0
    parallelization_factor: int = 1
    starting_position: str = "TRIM_HORIZON"
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    #: emulator only: the retry cap standing in for "infinite" (-1)
    retry_safety_limit: int = 1000
    #: emulator only: the event payload cap (Lambda's 6 MB)
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        _int_in("batch_size", self.batch_size, 1, 10_000)
        window = self.maximum_batching_window_s
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 <= window <= 300:
            raise ValueError(f"maximum_batching_window_s must be a number 0..300, got {window!r}")
        _int_in("parallelization_factor", self.parallelization_factor, 1, 10)
        if self.starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(
                f"starting_position must be TRIM_HORIZON or LATEST, got {self.starting_position!r}"
            )
        _int_in("maximum_retry_attempts", self.maximum_retry_attempts, -1, 10_000)
        age = self.maximum_record_age_s
        if age != -1:
            _int_in("maximum_record_age_s", age, 60, 604_800, note=" (or -1 for no limit)")
        for name in ("bisect_batch_on_function_error", "report_batch_item_failures"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _int_in("retry_safety_limit", self.retry_safety_limit, 0, 10**9)
        _int_in("max_payload_bytes", self.max_payload_bytes, 1, 10**12)

    @property
    def retry_limit(self) -> int:
        """The retries a batch gets: MaximumRetryAttempts, or the safety limit for -1."""
        if self.maximum_retry_attempts == -1:
            return self.retry_safety_limit
        return self.maximum_retry_attempts

    @classmethod
    def from_aws(cls, mapping: Mapping[str, Any], **emulator: Any) -> EsmConfig:
        """From CreateEventSourceMapping parameter names (unknown names are ignored)."""
        names = {
            "BatchSize": "batch_size",
            "MaximumBatchingWindowInSeconds": "maximum_batching_window_s",
            "ParallelizationFactor": "parallelization_factor",
            "StartingPosition": "starting_position",
            "MaximumRetryAttempts": "maximum_retry_attempts",
            "MaximumRecordAgeInSeconds": "maximum_record_age_s",
            "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
        }
        values = {ours: mapping[theirs] for theirs, ours in names.items() if theirs in mapping}
        if "FunctionResponseTypes" in mapping:
            values["report_batch_item_failures"] = (
                "ReportBatchItemFailures" in (mapping["FunctionResponseTypes"] or [])
            )
        return cls(**values, **emulator)


def _int_in(name: str, value: Any, low: int, high: int, note: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer {low}..{high}{note}, got {value!r}")
