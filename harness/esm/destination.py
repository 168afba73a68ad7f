"""The message an SQS/SNS on-failure destination receives when the event source mapping discards
records: ``DDBStreamBatchInfo`` for a DynamoDB stream (AWS Lambda docs: "Retain discarded records
for a DynamoDB event source in Lambda", example invocation record), ``KinesisBatchInfo`` for a
Kinesis data stream ("Retain discarded batch records for a Kinesis Data Streams event source in
Lambda": the same fields, the arrival times to the millisecond)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from harness.esm.report import FUNCTION_ERROR
from harness.esm.shards import Batch, Entry
from replicator.events import is_kinesis_arn


def on_failure_record(
    *, function_arn: str, stream_arn: str, shard_id: str, batch: Batch, entries: list[Entry],
    condition: str, now: float,
) -> dict[str, Any]:
    """The invocation record for ``entries`` of ``batch`` discarded under ``condition``
    (``now``: epoch seconds); its batch section is the one AWS sends for ``stream_arn``'s kind."""
    kinesis = is_kinesis_arn(stream_arn)
    section = "KinesisBatchInfo" if kinesis else "DDBStreamBatchInfo"
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
        section: {
            "shardId": shard_id,
            "startSequenceNumber": entries[0].sequence,
            "endSequenceNumber": entries[-1].sequence,
            "approximateArrivalOfFirstRecord": iso(entries[0].created, milliseconds=kinesis),
            "approximateArrivalOfLastRecord": iso(entries[-1].created, milliseconds=kinesis),
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

