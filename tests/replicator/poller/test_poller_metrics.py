"""The poller's Prometheus endpoint and health check, over HTTP on 127.0.0.1 (a free port), with an
injected clock: a shard that stops advancing turns /healthz to 503; an idle shard does not."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from harness.faults import BulkWriteShim
from replicator.errors import RetriesExhausted
from replicator.poller import Poller
from replicator.settings import Settings

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from replicator.poller.metrics import PollerMetrics  # noqa: E402

BUSY = "shardId-00000000000000000001-busy0000"
IDLE = "shardId-00000000000000000002-idle0000"
STALL_AFTER = 60.0
WALL = 1_800_000_000.0  # the injected Unix time at clock 0


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> Iterator[tuple[PollerMetrics, str]]:
    """PollerMetrics for table "fake" into collection "fake", served on a free port."""
    found = PollerMetrics("fake", "fake", stall_after_s=STALL_AFTER, clock=clock,
                          wall=lambda: WALL + clock.now)
    with found.serve(0) as server:
        assert server.host == "127.0.0.1"
        yield found, server.url


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"{url}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def health(url: str) -> tuple[int, dict[str, Any]]:
    status, text = get(f"{url}/healthz")
    return status, json.loads(text)


class FailsOn(BulkWriteShim):
    """The write of one _id fails (a transient write conflict at its index); the others land."""

    def __init__(self, inner: Any, document_id: str) -> None:
        super().__init__(inner)
        self.document_id = document_id

    def apply_one(self, operation: Any) -> None:
        if operation._filter.get("_id") == self.document_id:
            raise OperationFailure(f"{self.document_id}: write conflict (injected)", code=112)
        super().apply_one(operation)


def poller(fake: Any, collection: Any, metrics: PollerMetrics, **options: Any) -> Poller:
    return Poller(fake, None, "fake", collection, Settings(key_schema=("pk",)),
                  stream_arn=fake.stream_arn, key_schema=("pk",), poll_interval=0.0,
                  reader_options={"sleep": lambda _: None}, metrics=metrics,
                  backoff_base_s=0.0, backoff_max_s=0.0, **options)


def test_metrics_and_health_follow_the_shards(fake_streams: Any, wire_record: Any, mongo_db: Any,
                                              clock: Clock,
                                              metrics: tuple[PollerMetrics, str]) -> None:
    found, url = metrics
    fake = fake_streams()
    fake.add_shard(BUSY)
    fake.add_shard(IDLE)
    fake.append(BUSY, *(wire_record(f"{n:03d}") for n in range(1, 6)))

    # given a run that applied the busy shard's five records (two batches of 3 + 2)
    stats = poller(fake, mongo_db["fake"], found, batch_size=3).run(once=True)
    assert stats.records_applied == 5

    # then /metrics has the batches' figures, labelled with the table and the collection
    labels = (("collection", "fake"), ("table", "fake"))
    seen = samples(url)
    assert seen[("replicator_records_total", labels)] == 5
    assert seen[("replicator_applied_total", labels)] == 5
    assert seen[("replicator_already_newer_total", labels)] == 0
    assert seen[("replicator_quarantined_total", labels)] == 0
    assert seen[("replicator_failed_total", labels)] == 0
    assert seen[("replicator_round_trips_total", labels)] >= 2
    assert seen[("replicator_batch_duration_seconds_count", labels)] == 2
    assert seen[("replicator_replication_lag_seconds", labels)] > 0
    # and both shards advanced at the (injected) time of the run: the idle one by being read
    for shard in (BUSY, IDLE):
        assert seen[("replicator_shard_last_advance_timestamp_seconds",
                     tuple(sorted((*labels, ("shard", shard)))))] == WALL + 1000.0
    status, report = health(url)
    assert status == 200 and report["status"] == "ok" and report["stalled_shards"] == []

    # when nothing polls for longer than the threshold, every shard is stalled
    clock.now += STALL_AFTER + 1
    status, report = health(url)
    assert status == 503 and report["stalled_shards"] == [BUSY, IDLE]
    assert report["seconds_since_last_poll"] == STALL_AFTER + 1

    # a poll that finds nothing new is progress: idle shards are not stalled
    poller(fake, mongo_db["fake"], found).run(once=True)
    status, report = health(url)
    assert status == 200 and report["seconds_since_shard_advanced"] == {BUSY: 0.0, IDLE: 0.0}

    # when the busy shard's next record cannot be written (retried until the poller gives up)
    fake.append(BUSY, wire_record("006"))
    clock.now += 40
    with pytest.raises(RetriesExhausted):
        poller(fake, FailsOn(mongo_db["fake"], "k006"), found, max_attempts=2).run(once=True)

    # then, past the threshold, only the shard stuck in retries is stalled
    clock.now += 25  # the busy shard last advanced 65 s ago, the idle one was read 25 s ago
    status, report = health(url)
    assert status == 503 and report["stalled_shards"] == [BUSY]
    assert report["seconds_since_shard_advanced"] == {BUSY: 65.0, IDLE: 25.0}
    assert samples(url)[("replicator_failed_total", labels)] == 2  # two attempts, one record each


def test_a_shard_read_to_its_end_leaves_the_check(clock: Clock,
                                                  metrics: tuple[PollerMetrics, str]) -> None:
    found, url = metrics
    found.polled([BUSY, IDLE])
    found.finished(BUSY)
    clock.now += STALL_AFTER + 1
    found.polled([IDLE])
    status, report = health(url)
    assert status == 200 and report["seconds_since_shard_advanced"] == {IDLE: 0.0}


def test_a_poller_that_never_completes_a_poll_turns_unhealthy(
        clock: Clock, metrics: tuple[PollerMetrics, str]) -> None:
    _, url = metrics
    assert health(url)[0] == 200
    clock.now += STALL_AFTER + 1
    status, report = health(url)
    assert status == 503 and report["stalled_shards"] == []
    assert report["seconds_since_last_poll"] == STALL_AFTER + 1
