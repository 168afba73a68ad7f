"""Breaking the harness's KinesisBatchInfo (harness/esm/destination.py) with inputs of the kind of
tests/harness/test_driver.py's but new ones: arrival times at the millisecond's edges (.000, .999,
.500, one batch crossing a second), literal expected strings rather than a re-computation, a
DynamoDB stream's record beside it, and the message read back by ``replicator.redrive``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from replicator.redrive import batch_info

KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-kds"
T0 = 1_796_601_600  # 2026-12-07T00:00:00Z


def records(arrivals: list[float]) -> list[dict[str, Any]]:
    return [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"k{n}",
                         "sequenceNumber": str(49_700_000_000_000_000_000 + n),
                         "data": base64.b64encode(b"{}").decode(),
                         "approximateArrivalTimestamp": at},
             "eventSource": "aws:kinesis", "eventSourceARN": KINESIS_ARN,
             "eventID": f"shardId-000000000004:{49_700_000_000_000_000_000 + n}"}
            for n, at in enumerate(arrivals)]


def discarded(fed: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    esm = EventSourceMapping(lambda event: 1 / 0,
                             EsmConfig(batch_size=batch_size, maximum_retry_attempts=0),
                             stream_arn=KINESIS_ARN, on_failure=received.append,
                             sleep=lambda _: None)
    esm.feed("shardId-000000000004", fed)
    esm.drain()
    esm.close()
    return received


@pytest.mark.parametrize(("arrivals", "first", "last"), [
    ([T0 + 0.999, T0 + 1.0], "2026-12-07T00:00:00.999Z", "2026-12-07T00:00:01.000Z"),
    ([T0 + 0.5, T0 + 0.5], "2026-12-07T00:00:00.500Z", "2026-12-07T00:00:00.500Z"),
    ([T0 + 59.001, T0 + 60.999], "2026-12-07T00:00:59.001Z", "2026-12-07T00:01:00.999Z"),
    ([float(T0), T0 + 0.001], "2026-12-07T00:00:00.000Z", "2026-12-07T00:00:00.001Z"),
])
def test_arrival_times_at_the_milliseconds_edges(arrivals: list[float], first: str,
                                                 last: str) -> None:
    (message,) = discarded(records(arrivals), batch_size=10)
    section = message["KinesisBatchInfo"]
    assert (section["approximateArrivalOfFirstRecord"],
            section["approximateArrivalOfLastRecord"]) == (first, last)
    # redrive reads it back as a Kinesis range of that data stream, exactly
    info = batch_info(json.dumps(message))
    assert (info.kind, info.stream_arn, info.shard_id, info.batch_size) == (
        "kinesis", KINESIS_ARN, "shardId-000000000004", 2)
    assert (info.start, info.end) == (section["startSequenceNumber"],
                                      section["endSequenceNumber"])
    assert (info.first_arrival, info.last_arrival) == (first, last)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 5])
def test_every_record_is_in_exactly_one_range_whatever_the_batch_size(batch_size: int) -> None:
    fed = records([T0 + 0.25 * i for i in range(5)])
    messages = discarded(fed, batch_size)
    ranges = [(batch_info(json.dumps(m)).start, batch_info(json.dumps(m)).end) for m in messages]
    numbers = [r["kinesis"]["sequenceNumber"] for r in fed]
    covered = [n for start, end in ranges for n in numbers if start <= n <= end]
    assert covered == numbers  # each once, in order
    assert sum(m["KinesisBatchInfo"]["batchSize"] for m in messages) == len(fed)
