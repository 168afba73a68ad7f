"""Load runs that scale (issue 14, part 4): a bounded driver report, streaming percentiles, the
generated load stream, replay through the event source mapping, the source in its own process,
and each part's time. Small sizes only; the full-size run is ``nox -s load``."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec, source_backend
from harness.backends.mongomock_target import mongomock_client
from harness.captures.format import load_capture_dir
from harness.captures.recording import write_recording
from harness.captures.replay import FEED_CHUNK, iter_recorded_records, recorded_shards, replay
from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from harness.esm.report import LOG_SAMPLE
from harness.histogram import RELATIVE_ACCURACY, Histogram
from harness.lag import DeliveryTimes, LagStats, key_fingerprint, measure
from harness.loadgen import generate
from harness.scenario import load_scenario
from harness.timing import PARTS, Stopwatch, Timed, shares, timed_collection
from harness.workload import WorkloadSpec

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2024-01-01T00:00:00.000"


def stream_record(n: int, key: str) -> dict[str, Any]:
    image = {"pk": {"S": key}, "n": {"N": str(n)}, "pad": {"S": "x" * 200}}
    return {
        "eventID": f"e{n}", "eventName": "MODIFY", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"pk": {"S": key}}, "NewImage": image, "SequenceNumber": f"{n:021d}",
                     "SizeBytes": 250, "StreamViewType": "NEW_AND_OLD_IMAGES",
                     "ApproximateCreationDateTime": 1_700_000_000.0},
    }


class TickingClock:
    """A clock that moves 1 ms at every reading: deterministic durations, whatever the load."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def drive(count: int, *, keep_records: bool = False) -> Any:
    clock = TickingClock()
    mapping = EventSourceMapping(lambda event: None, EsmConfig(batch_size=10), stream_arn=ARN,
                                 clock=clock, sleep=lambda s: None, keep_records=keep_records)
    with mapping:
        mapping.feed("shard-1", (stream_record(n, f"k{n % 50}") for n in range(1, count + 1)))
        return mapping.drain()


# -- the driver's report -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_driver_report_does_not_grow_with_the_records_fed() -> None:
    small, large = drive(2_500), drive(25_000)

    assert (small.records_completed, large.records_completed) == (2_500, 25_000)
    assert large.invocations == 2_500 and large.outcomes() == {"success": 2_500}
    assert len(small.log) == len(large.log) == LOG_SAMPLE
    assert not large.completed_at and not large.deliveries
    assert large.handler_s.count == 2_500 and large.wait_s.count == 25_000
    # Ten times the records, about the same report (histogram buckets, not samples).
    assert len(pickle.dumps(large)) < 1.5 * len(pickle.dumps(small))


def test_keep_records_keeps_every_record_for_tests_and_chaos() -> None:
    small, large = drive(300, keep_records=True), drive(3000, keep_records=True)

    assert len(large.completed_at) == 3000 and len(large.deliveries) == 3000
    assert len(large.log) == 300
    assert len(pickle.dumps(large)) > 5 * len(pickle.dumps(small))


def test_on_complete_hands_over_each_completed_record_once() -> None:
    seen: list[tuple[float, str]] = []
    mapping = EventSourceMapping(
        lambda event: None, EsmConfig(batch_size=7), stream_arn=ARN,
        on_complete=lambda at, records: seen.extend(
            (at, r["dynamodb"]["SequenceNumber"]) for r in records),
    )
    with mapping:
        mapping.feed("shard-1", [stream_record(n, "k") for n in range(1, 21)])
        mapping.drain()
    assert [s for _, s in seen] == [f"{n:021d}" for n in range(1, 21)]


# -- streaming percentiles ---------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_histogram_percentiles_are_within_the_stated_relative_error(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(-3, 1.5) for _ in range(20_000)]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for p in (50, 90, 99):
        exact = ordered[int(p / 100 * (len(ordered) - 1))]
        estimate = histogram.percentile(p)
        assert estimate is not None
        assert abs(estimate - exact) <= RELATIVE_ACCURACY * exact + 1e-12, (p, estimate, exact)
    assert histogram.max == max(values) and histogram.percentile(100) == max(values)
    assert histogram.count == len(values)


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert Histogram().percentile(50) is None and Histogram().as_dict()["p99"] is None


def test_lag_series_stays_bounded_and_spans_the_run() -> None:
    stats = LagStats(series_limit=1000)
    for n in range(100_000):
        stats.add(float(n), 0.5)
    assert stats.count == 100_000 and len(stats.samples) <= 1000
    times = [t for t, _ in stats.samples]
    assert times[0] == 0.0 and times[-1] > 99_000  # evenly thinned, not truncated
    assert stats.percentile(50) == pytest.approx(0.5)


def test_measure_from_delivery_times_equals_measure_from_pairs() -> None:
    key = key_fingerprint({"pk": {"S": "a"}})
    writes = [(1.0, key), (2.0, key), (5.0, key)]
    deliveries = [(1.5, key), (4.0, key), (6.5, key)]
    times = DeliveryTimes()
    times.on_complete(1.5, [{"dynamodb": {"Keys": {"pk": {"S": "a"}}}}])
    times.on_complete(4.0, [{"dynamodb": {"Keys": {"pk": {"S": "a"}}}}])
    times.on_complete(6.5, [{"dynamodb": {"Keys": {"pk": {"S": "a"}}}}])

    by_pairs, by_times = measure(writes, deliveries), measure(writes, times)

    assert by_pairs.samples == by_times.samples == [(1.5, 0.5), (4.0, 2.0), (6.5, 1.5)]
    assert len(times) == 3


# -- the generated load stream and its replay --------------------------------------------------
def small_load(operations: int) -> tuple[TableSpec, WorkloadSpec]:
    scenario = load_scenario("load")
    return scenario.table, WorkloadSpec.from_dict({**scenario.workload, "operations": operations})


def test_the_load_scenario_is_large_and_zipf() -> None:
    scenario = load_scenario("load")
    assert scenario.workload["operations"] >= 50_000
    assert scenario.workload["key_distribution"] == "zipf"


@pytest.mark.slow
def test_a_generated_load_stream_replays_through_the_mapping_and_converges(tmp_path: Path) -> None:
    spec, workload = small_load(600)
    recording = generate(spec, workload)
    write_recording(recording, tmp_path)
    collection = mongomock_client()["load"]["items"]

    result = replay(load_capture_dir(tmp_path), collection, batch_size=50,
                    shards=recorded_shards(tmp_path))

    assert result.error is None and result.diff is not None and result.diff.converged
    assert result.driver is not None and result.driver.records_completed == len(recording.records)
    assert result.batches == result.invocations == -(-len(recording.records) // 50)
    # Deterministic: the same spec and seed give the same stream.
    assert generate(spec, workload).records == recording.records


def test_load_generation_refuses_what_it_cannot_model() -> None:
    spec, workload = small_load(10)
    workload = WorkloadSpec.from_dict({**workload.to_dict(), "mix": {"update_set": 1}})
    with pytest.raises(ValueError, match="update_set"):
        generate(spec, workload)


def test_replay_retries_through_the_mapping_and_counts_redeliveries(tmp_path: Path) -> None:
    spec, workload = small_load(40)
    write_recording(generate(spec, workload), tmp_path)
    capture = load_capture_dir(tmp_path)
    calls = {"n": 0}

    def flaky(event: dict[str, Any]) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first call fails")
        return None

    result = replay(capture, mongomock_client()["x"]["y"], batch_size=10, handler=flaky)

    assert result.error is None
    assert result.invocations == result.batches + 1 and result.redelivered == 10


def test_replay_reports_a_batch_that_keeps_failing(tmp_path: Path) -> None:
    spec, workload = small_load(20)
    write_recording(generate(spec, workload), tmp_path)

    def broken(event: dict[str, Any]) -> Any:
        raise RuntimeError("always")

    result = replay(load_capture_dir(tmp_path), mongomock_client()["x"]["y"], batch_size=10,
                    max_attempts=3, handler=broken)

    assert result.error is not None and "after 3 attempts" in result.error
    assert "RuntimeError: always" in result.error


def test_recorded_shards_come_from_recording_or_schedule(tmp_path: Path) -> None:
    (tmp_path / "recording.json").write_text(
        '{"shards": [{"shard_id": "a", "parent_shard_id": null, "records": 2},'
        ' {"shard_id": "b", "parent_shard_id": "a", "records": 1}]}')
    assert recorded_shards(tmp_path) == [("a", None, 2), ("b", "a", 1)]
    other = tmp_path / "chaos"
    other.mkdir()
    (other / "schedule.json").write_text('{"shards": [["s1", 3]]}')
    assert recorded_shards(other) == [("s1", None, 3)]
    assert recorded_shards(tmp_path / "nothing") is None


# -- each part's time --------------------------------------------------------------------------
def test_timed_objects_add_their_calls_to_the_stopwatch_and_pass_the_rest() -> None:
    ticks = iter(range(100))
    stopwatch = Stopwatch(clock=lambda: float(next(ticks)))
    collection = mongomock_client()["t"]["c"]
    timed = timed_collection(collection, stopwatch)

    timed.bulk_write([__import__("pymongo").InsertOne({"_id": 1})])
    timed.insert_one({"_id": 2})  # not timed: only bulk_write is the target's write

    assert stopwatch.calls == {"target_write_s": 1} and stopwatch.seconds["target_write_s"] == 1.0
    assert timed.name == "c" and collection.count_documents({}) == 2
    client = Timed(collection, stopwatch, "stream_read_s")
    client.find_one({"_id": 1})
    assert stopwatch.calls["stream_read_s"] == 1


def test_shares_split_the_handler_into_core_and_target_writes() -> None:
    parts = shares({"source_write_s": 6.0, "stream_read_s": 2.0, "target_write_s": 1.0},
                   handler_total_s=2.0)
    assert list(parts) == list(PARTS)
    assert parts["handler_core_s"] == {"seconds": 1.0, "share": 0.1}
    assert parts["source_write_s"]["share"] == 0.6
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0)


# -- the source in its own process -------------------------------------------------------------
@pytest.mark.slow
def test_moto_process_serves_from_a_child_process_and_stops_by_pid() -> None:
    source = source_backend("moto-process")
    source.start()
    pid = source.pid
    try:
        assert pid is not None and pid != os.getpid()
        table = source.create_table(TableSpec("load-child", ("id", "S")))
        source.dynamodb().put_item(TableName=table.spec.name, Item={"id": {"S": "a"}})
        assert source.dynamodb().scan(TableName=table.spec.name)["Count"] == 1
    finally:
        source.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow
def test_a_small_live_load_run_reports_each_part(tmp_path: Path) -> None:
    from harness.load import live_load, with_operations

    scenario = with_operations(load_scenario("load"), 300)
    figures = live_load(scenario, source="moto", target="mongomock", plot=tmp_path / "lag.png")

    assert figures["converged"] and figures["events"] > 0
    for part in ("source_write_s", "stream_read_s", "handler_core_s", "target_write_s"):
        assert figures["parts"][part]["seconds"] > 0, part
    assert figures["lag_s"]["samples"] > 0 and figures["lag_s"]["p99_s"] >= figures["lag_s"]["p50_s"]
    assert (tmp_path / "lag.png").stat().st_size > 0


@pytest.mark.parametrize("read_size", [7, 4096])
def test_recorded_records_are_read_one_by_one_as_the_whole_file_parses(read_size: int) -> None:
    import json

    for events in sorted(Path("tests/fixtures/dynamodb-local").glob("*/events.json")):
        streamed = list(iter_recorded_records(events, read_size=read_size))
        assert streamed == json.loads(events.read_text())["Records"], events


@pytest.mark.slow
def test_replay_from_a_record_stream_feeds_it_in_chunks(tmp_path: Path) -> None:
    spec, workload = small_load(2500)
    recording = generate(spec, workload)
    write_recording(recording, tmp_path)
    capture = load_capture_dir(tmp_path)
    pulled: list[int] = []

    def records() -> Any:
        for n, record in enumerate(iter_recorded_records(tmp_path / "events.json")):
            pulled.append(n)
            yield record

    progress: list[tuple[int, int, int]] = []
    result = replay(capture, mongomock_client()["load"]["items"], batch_size=100,
                    records=records(), total=len(recording.records),
                    progress=lambda done, total: progress.append((done, total, len(pulled))))

    assert result.error is None and result.diff is not None and result.diff.converged
    assert len(pulled) == len(recording.records) > 2 * FEED_CHUNK
    assert progress[-1][:2] == (len(recording.records), len(recording.records))
    # The first batch completed when only the first chunk had been read.
    assert progress[0][2] == FEED_CHUNK
