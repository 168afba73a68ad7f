"""harness.esm.mapping: the event source mapping emulation, driven with fake handlers and a fake clock."""

from __future__ import annotations

import base64
import threading
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from harness.esm.report import RECORD_AGE_EXCEEDED, RETRY_ATTEMPTS_EXHAUSTED
from harness.esm.response import MalformedResponse, lane_for, retry_from_index
from support.clock import FakeClock

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2024-01-01T00:00:00.000"
SHARD = "shardId-00000001700000000000-aaaaaaaa"
T0 = 1_700_000_000.0


def seq(n: int) -> str:
    return f"{n:021d}"


def record(n: int, key: str = "k", *, created: float = T0, blob: bytes | None = None) -> dict:
    """Record ``n`` as boto3's dynamodbstreams client returns it."""
    image: dict[str, Any] = {"pk": {"S": key}, "n": {"N": str(n)}}
    if blob is not None:
        image["blob"] = {"B": blob}
    return {
        "eventID": f"event-{n}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.fromtimestamp(created, tz=timezone.utc),
            "Keys": {"pk": {"S": key}},
            "NewImage": image,
            "SequenceNumber": seq(n),
            "SizeBytes": 20,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def records(first: int, last: int, key: str = "k") -> list[dict]:
    return [record(n, key) for n in range(first, last + 1)]


class Recorder:
    """A handler that remembers each event's sequence numbers and answers with ``respond``."""

    def __init__(self, respond: Any = None) -> None:
        self.respond = respond
        self.calls: list[list[str]] = []
        self.events: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> Any:
        sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        with self._lock:
            self.calls.append(sequences)
            self.events.append(event)
        return self.respond(sequences, len(self.calls)) if callable(self.respond) else self.respond

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


def mapping(handler: Any, clock: FakeClock | None = None, *, partition_key: str | None = None,
            **config: Any) -> EventSourceMapping:
    clock = clock or FakeClock()
    return EventSourceMapping(handler, EsmConfig(**config), stream_arn=ARN, clock=clock,
                              sleep=clock.sleep, partition_key=partition_key, keep_records=True)


def failures(*sequences: str) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sequences]}


# -- configuration -------------------------------------------------------------------------------
def test_config_defaults_are_aws_defaults() -> None:
    config = EsmConfig()
    assert (config.batch_size, config.maximum_batching_window_s, config.parallelization_factor,
            config.starting_position, config.maximum_retry_attempts,
            config.maximum_record_age_s, config.bisect_batch_on_function_error,
            config.report_batch_item_failures) == (100, 0, 1, "TRIM_HORIZON", -1, -1, False, False)
    assert config.retry_limit == config.retry_safety_limit


@pytest.mark.parametrize("bad", [
    {"batch_size": 0}, {"batch_size": 10_001}, {"batch_size": 2.5}, {"batch_size": True},
    {"maximum_batching_window_s": -1}, {"maximum_batching_window_s": 301},
    {"parallelization_factor": 0}, {"parallelization_factor": 11},
    {"starting_position": "AT_TIMESTAMP"},
    {"maximum_retry_attempts": -2}, {"maximum_retry_attempts": 10_001},
    {"maximum_record_age_s": 59}, {"maximum_record_age_s": 0}, {"maximum_record_age_s": 604_801},
    {"bisect_batch_on_function_error": "yes"}, {"report_batch_item_failures": 1},
    {"retry_safety_limit": -1},
])
def test_config_rejects_out_of_range(bad: dict) -> None:
    with pytest.raises(ValueError):
        EsmConfig(**bad)


def test_config_from_aws_names() -> None:
    config = EsmConfig.from_aws({
        "BatchSize": 10, "MaximumBatchingWindowInSeconds": 5, "ParallelizationFactor": 2,
        "StartingPosition": "LATEST", "MaximumRetryAttempts": 3, "MaximumRecordAgeInSeconds": 60,
        "BisectBatchOnFunctionError": True, "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "Enabled": True,
    }, retry_safety_limit=5)
    assert config == EsmConfig(10, 5, 2, "LATEST", 3, 60, True, True, retry_safety_limit=5)


# -- batching ------------------------------------------------------------------------------------
def test_batches_of_batch_size_in_order() -> None:
    handler = Recorder()
    esm = mapping(handler, batch_size=100)
    esm.feed(SHARD, records(1, 250))
    assert esm.pump() == 3
    assert handler.sizes == [100, 100, 50]
    assert [s for call in handler.calls for s in call] == [seq(n) for n in range(1, 251)]
    report = esm.drain()
    assert report.invocations == 3 and report.records_delivered == 250
    assert report.records_completed == 250 and report.retries == 0 and esm.pending_records == 0


def test_batch_of_one() -> None:
    handler = Recorder()
    esm = mapping(handler, batch_size=1)
    esm.feed(SHARD, records(1, 3))
    esm.drain()
    assert handler.calls == [[seq(1)], [seq(2)], [seq(3)]]


def test_batching_window_waits_for_the_oldest_record() -> None:
    clock = FakeClock()
    handler = Recorder()
    esm = mapping(handler, clock, batch_size=10, maximum_batching_window_s=10)
    esm.feed(SHARD, records(1, 3))
    assert esm.pump() == 0
    clock.advance(5)
    esm.feed(SHARD, records(4, 5))
    assert esm.pump() == 0
    clock.advance(4.9)
    assert esm.pump() == 0
    clock.advance(0.1)  # 10 s since record 1 arrived
    assert esm.pump() == 1
    assert handler.calls == [[seq(n) for n in range(1, 6)]]
    assert esm.report.log[0].started_at == T0 + 10


def test_batching_window_ends_early_when_the_batch_is_full() -> None:
    clock = FakeClock()
    handler = Recorder()
    esm = mapping(handler, clock, batch_size=4, maximum_batching_window_s=300)
    esm.feed(SHARD, records(1, 10))
    assert esm.pump() == 2  # two full batches go at once, the rest waits
    assert handler.sizes == [4, 4]
    assert esm.pending_records == 2


def test_drain_waits_out_the_window_with_sleep() -> None:
    clock = FakeClock()
    handler = Recorder()
    esm = mapping(handler, clock, batch_size=10, maximum_batching_window_s=2)
    esm.feed(SHARD, records(1, 3))
    report = esm.drain()
    assert clock.sleeps == [2]
    assert handler.sizes == [3]
    assert report.completed_at == {seq(n): T0 + 2 for n in (1, 2, 3)}


def test_drain_does_not_hang_on_a_clock_that_never_moves() -> None:
    clock = FakeClock()
    handler = Recorder()
    esm = EventSourceMapping(handler, EsmConfig(batch_size=10, maximum_batching_window_s=60),
                             stream_arn=ARN, clock=clock, sleep=lambda s: None)
    esm.feed(SHARD, records(1, 3))
    esm.drain()
    assert handler.sizes == [3]


def test_payload_limit_cuts_batches() -> None:
    handler = Recorder()
    esm = mapping(handler, batch_size=100, max_payload_bytes=3000)
    esm.feed(SHARD, [record(n, blob=b"x" * 600) for n in range(1, 11)])
    esm.drain()
    assert sum(handler.sizes) == 10 and len(handler.sizes) > 1 and max(handler.sizes) < 10


def test_the_event_is_lambda_shaped_and_fresh_each_time() -> None:
    def respond(sequences: list[str], call: int) -> Any:
        if call == 1:
            raise RuntimeError("boom")
        return None

    handler = Recorder(respond)
    esm = mapping(handler, maximum_retry_attempts=1)
    esm.feed(SHARD, [record(1, blob=b"\x00\xff")])
    esm.drain()
    first, second = handler.events
    assert first == second and first is not second
    assert first["Records"][0] is not second["Records"][0]
    lambda_record = first["Records"][0]
    assert lambda_record["eventSourceARN"] == ARN and lambda_record["awsRegion"] == "us-east-1"
    blob = base64.b64encode(b"\x00\xff").decode()
    assert lambda_record["dynamodb"]["NewImage"]["blob"] == {"B": blob}
    assert lambda_record["dynamodb"]["ApproximateCreationDateTime"] == T0


def test_a_handler_mutating_its_event_does_not_change_the_retry() -> None:
    seen: list[list[str]] = []

    def handler(event: dict) -> Any:
        seen.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
        event["Records"].clear()
        if len(seen) == 1:
            raise RuntimeError("boom")

    esm = mapping(handler, maximum_retry_attempts=1)
    esm.feed(SHARD, records(1, 3))
    esm.drain()
    assert seen == [[seq(1), seq(2), seq(3)]] * 2


# -- partial batch responses ---------------------------------------------------------------------
def test_partial_failure_checkpoints_at_the_lowest_and_redelivers_exactly_from_there() -> None:
    clock = FakeClock()

    def respond(sequences: list[str], call: int) -> Any:
        clock.advance(1)
        if call == 1:
            return failures(seq(7), seq(4), seq(9))  # the lowest counts, wherever it is listed
        return None

    handler = Recorder(respond)
    esm = mapping(handler, clock, batch_size=10, report_batch_item_failures=True)
    esm.feed(SHARD, records(1, 15))
    report = esm.drain()
    assert handler.calls == [
        [seq(n) for n in range(1, 11)],
        [seq(n) for n in range(4, 11)],  # exactly the remaining records
        [seq(n) for n in range(11, 16)],
    ]
    assert [i.outcome for i in report.log] == ["partial_failure", "success", "success"]
    assert report.log[0].retry_from == seq(4)
    assert report.retries == 1 and report.records_delivered == 22
    assert all(report.completed_at[seq(n)] == T0 + 1 for n in (1, 2, 3))
    assert all(report.completed_at[seq(n)] == T0 + 2 for n in range(4, 11))
    assert report.records_completed == 15
    assert len(report.deliveries) == 15  # each record completes once


def test_partial_failure_at_the_first_record_retries_everything() -> None:
    handler = Recorder(lambda s, call: failures(s[0]) if call == 1 else {"batchItemFailures": []})
    esm = mapping(handler, batch_size=5, report_batch_item_failures=True)
    esm.feed(SHARD, records(1, 5))
    esm.drain()
    assert handler.calls == [[seq(n) for n in range(1, 6)]] * 2


def test_partial_failures_consume_retries_and_then_discard_the_rest() -> None:
    handler = Recorder(lambda s, call: failures(s[-1]))  # the last record never succeeds
    esm = mapping(handler, batch_size=5, report_batch_item_failures=True,
                  maximum_retry_attempts=2)
    esm.feed(SHARD, records(1, 5))
    report = esm.drain()
    assert handler.sizes == [5, 1, 1]
    assert report.records_completed == 4 and report.discarded_records == 1
    info = report.on_failure[0]
    assert info["requestContext"]["condition"] == RETRY_ATTEMPTS_EXHAUSTED
    assert info["requestContext"]["approximateInvokeCount"] == 3
    assert "functionError" not in info["responseContext"]
    assert info["DDBStreamBatchInfo"]["startSequenceNumber"] == seq(5)


@pytest.mark.parametrize("response", [
    None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"statusCode": 500},
])
def test_responses_that_mean_complete_success(response: Any) -> None:
    handler = Recorder(response)
    esm = mapping(handler, report_batch_item_failures=True)
    esm.feed(SHARD, records(1, 3))
    report = esm.drain()
    assert handler.sizes == [3] and report.outcomes() == {"success": 1}


@pytest.mark.parametrize("response", [
    "ok",
    ["00000000000000000000001"],
    42,
    {"batchItemFailures": "000000000000000000002"},
    {"batchItemFailures": {"itemIdentifier": "000000000000000000002"}},
    {"batchItemFailures": [{"itemIdentifier": ""}]},
    {"batchItemFailures": [{"itemIdentifier": None}]},
    {"batchItemFailures": [{}]},
    {"batchItemFailures": [{"itemId": "000000000000000000002"}]},  # a wrong key name
    {"batchItemFailures": [{"itemIdentifier": "999"}]},  # not in the batch
    {"batchItemFailures": [{"itemIdentifier": 2}]},
    {"batchItemFailures": ["000000000000000000002"]},
    {"batchItemFailures": [{"itemIdentifier": "000000000000000000002"}, {"itemIdentifier": ""}]},
])
def test_malformed_responses_fail_the_whole_batch(response: Any) -> None:
    handler = Recorder(lambda s, call: response if call == 1 else None)
    esm = mapping(handler, report_batch_item_failures=True, bisect_batch_on_function_error=True)
    esm.feed(SHARD, records(1, 3))
    report = esm.drain()
    assert handler.calls == [[seq(1), seq(2), seq(3)]] * 2  # whole batch again, not bisected
    assert [i.outcome for i in report.log] == ["malformed_response", "success"]
    assert report.retries == 1 and report.bisections == 0


def test_without_report_batch_item_failures_any_response_is_success() -> None:
    handler = Recorder(lambda s, call: failures(s[0]))
    esm = mapping(handler, report_batch_item_failures=False)
    esm.feed(SHARD, records(1, 3))
    report = esm.drain()
    assert handler.sizes == [3] and report.records_completed == 3 and report.retries == 0


def test_retry_from_index_rules() -> None:
    batch = [seq(1), seq(2), seq(3)]
    assert retry_from_index(None, batch) is None
    assert retry_from_index(failures(seq(3), seq(2)), batch) == 1
    with pytest.raises(MalformedResponse):
        retry_from_index(failures(seq(4)), batch)


def test_unserialisable_response_is_a_function_error() -> None:
    handler = Recorder(lambda s, call: object() if call == 1 else {"n": Decimal("1.5")})
    esm = mapping(handler, report_batch_item_failures=True)
    esm.feed(SHARD, records(1, 2))
    report = esm.drain()
    assert [i.outcome for i in report.log] == ["function_error", "success"]
    assert report.log[0].error is not None and "MarshalError" in report.log[0].error


# -- function errors, retries, discards ----------------------------------------------------------
def test_function_error_retries_then_discards_with_an_on_failure_record() -> None:
    received: list[dict] = []

    def respond(sequences: list[str], call: int) -> Any:
        if seq(3) in sequences:
            raise ValueError("cannot apply")
        return None

    handler = Recorder(respond)
    clock = FakeClock()
    esm = EventSourceMapping(
        handler, EsmConfig(batch_size=3, maximum_retry_attempts=2), stream_arn=ARN,
        clock=clock, sleep=clock.sleep, on_failure=received.append, keep_records=True,
    )
    esm.feed(SHARD, records(1, 5))
    report = esm.drain()
    assert handler.calls == [[seq(1), seq(2), seq(3)]] * 3 + [[seq(4), seq(5)]]
    assert report.retries == 2 and report.invocations == 4
    assert report.discarded_records == 3 and report.safety_cap_hits == 0
    assert received == report.on_failure and len(received) == 1
    info = received[0]
    assert info["requestContext"]["condition"] == RETRY_ATTEMPTS_EXHAUSTED
    assert info["requestContext"]["approximateInvokeCount"] == 3
    assert info["responseContext"]["functionError"] == "Unhandled"
    assert info["version"] == "1.0"
    assert info["DDBStreamBatchInfo"] == {
        "shardId": SHARD,
        "startSequenceNumber": seq(1),
        "endSequenceNumber": seq(3),
        "approximateArrivalOfFirstRecord": "2023-11-14T22:13:20Z",
        "approximateArrivalOfLastRecord": "2023-11-14T22:13:20Z",
        "batchSize": 3,
        "streamArn": ARN,
    }
    discard = report.discarded[0]
    assert discard.sequence_numbers == (seq(1), seq(2), seq(3))
    assert discard.invocations == 3 and discard.last_outcome == "function_error"
    assert "ValueError: cannot apply" in (discard.last_error or "")
    assert [i.attempt for i in report.log] == [1, 2, 3, 1]
    assert set(report.completed_at) == {seq(4), seq(5)}


KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-kds"


def kinesis_records(numbers: list[int], arrival: float) -> list[dict[str, Any]]:
    """Lambda-shaped Kinesis records (what KinesisReader hands the mapping), 0.25 s apart."""
    return [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"k{n}",
                         "sequenceNumber": str(49_600_000_000_000_000_000 + n),
                         "data": base64.b64encode(b"{}").decode(),
                         "approximateArrivalTimestamp": arrival + 0.25 * i},
             "eventSource": "aws:kinesis", "eventSourceARN": KINESIS_ARN,
             "eventID": f"shardId-000000000001:{49_600_000_000_000_000_000 + n}"}
            for i, n in enumerate(numbers)]


@pytest.mark.parametrize(("numbers", "batch_size", "arrival"), [
    ([1, 2, 3], 3, 1_700_000_000.123),
    ([5, 9, 12, 40, 41], 2, 1_796_601_600.5),
    ([7], 10, 1_600_000_000.0),
])
def test_a_kinesis_mappings_on_failure_record_is_kinesis_batch_info(
        numbers: list[int], batch_size: int, arrival: float) -> None:
    # AWS Lambda docs, "Retain discarded batch records for a Kinesis Data Streams event source",
    # example invocation record: KinesisBatchInfo, arrival times to the millisecond
    received: list[dict[str, Any]] = []
    esm = EventSourceMapping(lambda event: 1 / 0,
                             EsmConfig(batch_size=batch_size, maximum_retry_attempts=0),
                             stream_arn=KINESIS_ARN, on_failure=received.append,
                             sleep=lambda _: None)
    fed = kinesis_records(numbers, arrival)
    esm.feed("shardId-000000000001", fed)
    esm.drain()
    esm.close()
    batches = [fed[i:i + batch_size] for i in range(0, len(fed), batch_size)]
    assert len(received) == len(batches)
    for message, batch in zip(received, batches, strict=True):
        assert "DDBStreamBatchInfo" not in message
        first, last = batch[0]["kinesis"], batch[-1]["kinesis"]
        assert message["KinesisBatchInfo"] == {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": first["sequenceNumber"],
            "endSequenceNumber": last["sequenceNumber"],
            "approximateArrivalOfFirstRecord": iso_ms(first["approximateArrivalTimestamp"]),
            "approximateArrivalOfLastRecord": iso_ms(last["approximateArrivalTimestamp"]),
            "batchSize": len(batch),
            "streamArn": KINESIS_ARN,
        }
        assert message["requestContext"]["condition"] == RETRY_ATTEMPTS_EXHAUSTED


def iso_ms(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_zero_retry_attempts_discards_at_the_first_error() -> None:
    handler = Recorder(lambda s, call: 1 / 0)
    esm = mapping(handler, maximum_retry_attempts=0)
    esm.feed(SHARD, records(1, 2))
    report = esm.drain()
    assert handler.sizes == [2] and report.discarded_records == 2 and report.retries == 0


def test_infinite_retries_stop_at_the_safety_limit_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = Recorder(lambda s, call: 1 / 0)
    esm = mapping(handler, maximum_retry_attempts=-1, retry_safety_limit=4)
    esm.feed(SHARD, records(1, 2))
    report = esm.drain()
    assert handler.sizes == [2] * 5
    assert report.safety_cap_hits == 1 and report.discarded[0].safety_cap
    assert report.summary()["safety_cap_hits"] == 1
    assert "safety limit" in caplog.text


# -- bisection -----------------------------------------------------------------------------------
def poison(bad: str) -> Recorder:
    def respond(sequences: list[str], call: int) -> Any:
        if bad in sequences:
            raise RuntimeError("poison record")
        return None

    return Recorder(respond)


def test_bisection_isolates_the_poison_record() -> None:
    handler = poison(seq(6))
    esm = mapping(handler, batch_size=8, bisect_batch_on_function_error=True,
                  maximum_retry_attempts=0)
    esm.feed(SHARD, records(1, 8))
    report = esm.drain()
    assert handler.calls == [
        [seq(n) for n in range(1, 9)],  # fails: split 4 + 4
        [seq(n) for n in range(1, 5)],  # ok
        [seq(n) for n in range(5, 9)],  # fails: split 2 + 2
        [seq(5), seq(6)],  # fails: split 1 + 1
        [seq(5)],  # ok
        [seq(6)],  # fails, cannot split, no retries left: discarded
        [seq(7), seq(8)],  # ok
    ]
    assert report.bisections == 3 and report.retries == 0
    assert [d.sequence_numbers for d in report.discarded] == [(seq(6),)]
    assert set(report.completed_at) == {seq(n) for n in range(1, 9)} - {seq(6)}
    info = report.on_failure[0]
    assert info["DDBStreamBatchInfo"]["batchSize"] == 1
    assert info["requestContext"]["approximateInvokeCount"] == 4  # the enclosing batches' too


def test_bisection_does_not_consume_the_retry_quota() -> None:
    handler = poison(seq(3))
    esm = mapping(handler, batch_size=4, bisect_batch_on_function_error=True,
                  maximum_retry_attempts=2)
    esm.feed(SHARD, records(1, 4))
    report = esm.drain()
    alone = [call for call in handler.calls if call == [seq(3)]]
    assert len(alone) == 3  # first attempt + 2 retries once isolated
    assert report.retries == 2 and report.discarded_records == 1
    assert report.records_completed == 3


def test_partial_response_with_bisection_retries_only_the_remaining_records() -> None:
    handler = Recorder(lambda s, call: failures(seq(3)) if call == 1 else None)
    esm = mapping(handler, batch_size=6, bisect_batch_on_function_error=True,
                  report_batch_item_failures=True)
    esm.feed(SHARD, records(1, 6))
    report = esm.drain()
    assert handler.calls == [[seq(n) for n in range(1, 7)], [seq(n) for n in range(3, 7)]]
    assert report.bisections == 0


# -- record age ----------------------------------------------------------------------------------
def test_records_older_than_maximum_record_age_are_discarded_unseen() -> None:
    clock = FakeClock()
    handler = Recorder()
    esm = mapping(handler, clock, maximum_record_age_s=60)
    esm.feed(SHARD, [record(1, created=T0 - 100), record(2, created=T0 - 61),
                     record(3, created=T0 - 60), record(4, created=T0 - 1)])
    report = esm.drain()
    assert handler.calls == [[seq(3), seq(4)]]
    assert report.discarded_records == 2
    info = report.on_failure[0]
    assert info["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    assert info["requestContext"]["approximateInvokeCount"] == 0
    assert info["DDBStreamBatchInfo"]["startSequenceNumber"] == seq(1)
    assert info["DDBStreamBatchInfo"]["endSequenceNumber"] == seq(2)
    assert info["DDBStreamBatchInfo"]["batchSize"] == 2


def test_records_that_age_out_while_retried_are_discarded() -> None:
    clock = FakeClock()

    def respond(sequences: list[str], call: int) -> Any:
        clock.advance(45)  # a slow, failing function
        raise TimeoutError("Task timed out")

    handler = Recorder(respond)
    esm = mapping(handler, clock, maximum_record_age_s=60, maximum_retry_attempts=-1)
    esm.feed(SHARD, records(1, 2))
    report = esm.drain()
    assert handler.sizes == [2, 2]  # at t=45 still young; at t=90 too old to invoke
    assert report.on_failure[0]["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    assert report.on_failure[0]["requestContext"]["approximateInvokeCount"] == 2
    assert report.safety_cap_hits == 0


# -- parallelization -----------------------------------------------------------------------------
def keys_in_distinct_lanes(factor: int, count: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        found.setdefault(lane_for({"pk": {"S": f"key-{n}"}}, factor), f"key-{n}")
        n += 1
    return list(found.values())


def test_lane_for_is_stable_and_in_range() -> None:
    keys = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    lanes = {lane_for(keys, 7) for _ in range(5)}
    assert len(lanes) == 1 and 0 <= lanes.pop() < 7
    assert lane_for(keys, 1) == 0
    # with the partition attribute named, the sort key does not matter
    assert lane_for(keys, 10, "pk") == lane_for({"pk": {"S": "a"}, "sk": {"N": "2"}}, 10, "pk")
    assert lane_for({"pk": {"B": b"\x00"}}, 3) in range(3)


def test_parallelization_keeps_per_key_order() -> None:
    keys = [f"key-{i}" for i in range(12)]
    feed = [record(n, keys[n % len(keys)]) for n in range(1, 241)]
    seen: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def handler(event: dict) -> Any:
        with lock:
            for r in event["Records"]:
                seen[r["dynamodb"]["Keys"]["pk"]["S"]].append(r["dynamodb"]["SequenceNumber"])
        return None

    esm = mapping(handler, batch_size=7, parallelization_factor=4)
    esm.feed(SHARD, feed)
    report = esm.drain()
    for sequences in seen.values():
        assert sequences == sorted(sequences)
        assert len(sequences) == len(set(sequences))
    assert sum(len(s) for s in seen.values()) == 240 == report.records_completed
    assert len({i.lane for i in report.log}) > 1


def test_parallelization_keeps_per_key_order_through_retries() -> None:
    keys = keys_in_distinct_lanes(3, 3)
    seen: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    calls = {"n": 0}

    def handler(event: dict) -> Any:
        with lock:
            calls["n"] += 1
            sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
            for r in event["Records"]:
                seen[r["dynamodb"]["Keys"]["pk"]["S"]].append(r["dynamodb"]["SequenceNumber"])
            if calls["n"] % 3 == 0 and len(sequences) > 1:
                return failures(sequences[1])
        return None

    esm = mapping(handler, batch_size=4, parallelization_factor=3,
                  report_batch_item_failures=True)
    esm.feed(SHARD, [record(n, keys[n % 3]) for n in range(1, 61)])
    report = esm.drain()
    assert report.records_completed == 60
    for sequences in seen.values():
        # redeliveries repeat a suffix; what was completed is never delivered again out of order
        completed_order = list(dict.fromkeys(sequences))
        assert completed_order == sorted(completed_order)


def test_parallel_batches_really_overlap() -> None:
    first, second = keys_in_distinct_lanes(2, 2)
    # The timeout only ends a run whose invocations never overlap (then the test fails): a loaded
    # machine may take seconds to start the second one.
    barrier = threading.Barrier(2, timeout=120)
    threads: set[str] = set()

    def handler(event: dict) -> Any:
        threads.add(threading.current_thread().name)
        barrier.wait()  # both invocations must be running at the same time to get past this
        return None

    esm = mapping(handler, batch_size=10, parallelization_factor=2)
    esm.feed(SHARD, [record(1, first), record(2, second), record(3, first), record(4, second)])
    report = esm.drain()
    assert report.outcomes() == {"success": 2}
    assert {i.lane for i in report.log} == {0, 1}
    assert len(threads) == 2


def test_shards_run_concurrently_too() -> None:
    barrier = threading.Barrier(2, timeout=120)  # a safety net, as above

    def respond(sequences: list[str], call: int) -> Any:
        barrier.wait()
        return None

    handler = Recorder(respond)
    esm = mapping(handler)
    esm.feed("shard-a", records(1, 3))
    esm.feed("shard-b", records(4, 6))
    report = esm.drain()
    assert report.outcomes() == {"success": 2}
    assert {i.shard_id for i in report.log} == {"shard-a", "shard-b"}


def test_a_child_shard_waits_for_its_parent() -> None:
    handler = Recorder(lambda s, call: 1 / 0 if call == 1 else None)
    esm = mapping(handler, batch_size=2, maximum_retry_attempts=1)
    esm.feed("child", records(10, 11), parent_shard_id="parent")
    esm.feed("parent", records(1, 3))
    esm.drain()
    order = [s for call in handler.calls for s in call]
    assert order.index(seq(10)) > max(i for i, s in enumerate(order) if s in {seq(1), seq(3)})
    assert handler.calls[-1] == [seq(10), seq(11)]
    with pytest.raises(ValueError):
        esm.feed("x", [], parent_shard_id="x")


# -- the report ----------------------------------------------------------------------------------
def test_report_log_summary_and_deliveries() -> None:
    clock = FakeClock()

    def respond(sequences: list[str], call: int) -> Any:
        clock.advance(0.5)
        return None

    handler = Recorder(respond)
    esm = mapping(handler, clock, batch_size=2)
    esm.feed(SHARD, records(1, 3))
    report = esm.drain()
    assert [(i.shard_id, i.first_sequence, i.last_sequence, i.size, i.outcome)
            for i in report.log] == [(SHARD, seq(1), seq(2), 2, "success"),
                                     (SHARD, seq(3), seq(3), 1, "success")]
    assert [i.duration_s for i in report.log] == [0.5, 0.5]
    assert report.completed_at == {seq(1): T0 + 0.5, seq(2): T0 + 0.5, seq(3): T0 + 1.0}
    assert [(at, r["dynamodb"]["SequenceNumber"]) for at, r in report.deliveries] == [
        (T0 + 0.5, seq(1)), (T0 + 0.5, seq(2)), (T0 + 1.0, seq(3))]
    summary = report.summary()
    assert summary["invocations"] == 2 and summary["records_completed"] == 3
    assert summary["outcomes"] == {"success": 2} and summary["mean_batch_size"] == 1.5
    assert esm.drain() is report  # cumulative
    esm.feed(SHARD, records(4, 4))
    assert esm.drain().records_completed == 4
    esm.close()


def test_feed_rejects_a_record_without_a_sequence_number() -> None:
    esm = mapping(Recorder())
    with pytest.raises(ValueError, match="SequenceNumber"):
        esm.feed(SHARD, [{"dynamodb": {"Keys": {"pk": {"S": "a"}}}}])


def test_drives_the_replicator_end_to_end() -> None:
    pytest.importorskip("mongomock")
    from harness.backends.mongomock_target import mongomock_client
    from replicator.core import Replicator
    from replicator.settings import Settings

    collection = mongomock_client()["db"]["items"]
    replicator = Replicator(collection, Settings(key_schema=("pk",)))
    esm = mapping(replicator.handle, batch_size=3, parallelization_factor=2,
                  report_batch_item_failures=True, partition_key="pk")
    esm.feed(SHARD, [record(n, f"key-{n % 4}") for n in range(1, 21)])
    report = esm.drain()
    assert report.records_completed == 20 and not report.on_failure
    documents = {d["pk"]: d["n"] for d in collection.find({})}
    assert len(documents) == 4
    assert documents == {f"key-{k}": max(n for n in range(1, 21) if n % 4 == k) for k in range(4)}
