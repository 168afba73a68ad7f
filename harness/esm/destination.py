"""The message an SQS/SNS on-failure destination receives when the event source mapping discards
records (AWS docs: "Retain discarded records for a DynamoDB event source in Lambda", example
invocation record)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from harness.esm.report import FUNCTION_ERROR
from harness.esm.shards import Batch, Entry


def on_failure_record(
    *, function_arn: str, stream_arn: str, shard_id: str, batch: Batch, entries: list[Entry],
    condition: str, now: float,
) -> dict[str, Any]:
    """The invocation record for ``entries`` of ``batch`` discarded under ``condition``
    (``now``: epoch seconds)."""
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if batch.last_outcome == FUNCTION_ERROR:
        response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": batch.invocations,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": iso(now, milliseconds=True),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": entries[0].sequence,
            "endSequenceNumber": entries[-1].sequence,
            "approximateArrivalOfFirstRecord": iso(entries[0].created),
            "approximateArrivalOfLastRecord": iso(entries[-1].created),
            "batchSize": len(entries),
            "streamArn": stream_arn,
        },
    }


def iso(epoch: float | None, *, milliseconds: bool = False) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def emulated_function_arn(stream_arn: str, region: str) -> str:
    parts = stream_arn.split(":")
    account = parts[4] if len(parts) > 5 and parts[4] else "000000000000"
    return f"arn:aws:lambda:{region}:{account}:function:emulated-esm"

