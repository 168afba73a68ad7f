"""replicator.poller.streams.StreamReader against a fake DynamoDB Streams client (tests/harness/conftest.py).

The streams come from tests/harness/data/streams/*.json: constructed ones for what no emulator
can produce (splits, rollover chains, paginated DescribeStream, expiring iterators) and one
recorded from DynamoDB Local. Each file says, independently of the reader, which records must come
back in which order.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from replicator.errors import StreamReadTimeout
from replicator.poller.streams import StreamReader, lineage_order
from support.clock import FakeClock


def sequences(per_shard: Any) -> list[tuple[str, list[str]]]:
    items = per_shard.items() if isinstance(per_shard, dict) else per_shard
    return [(shard, [r["dynamodb"]["SequenceNumber"] for r in records]) for shard, records in items]


def expected(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(shard, list(seqs)) for shard, seqs in data["expected"]]


def no_sleep(_: float) -> None:
    pass


def reader_for(fake: Any, **options: Any) -> StreamReader:
    options.setdefault("sleep", no_sleep)
    return StreamReader(fake, fake.stream_arn, **options)


def all_sequences(per_shard: dict[str, list[Any]]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for records in per_shard.values() for r in records]


# -- the data files --------------------------------------------------------------------------------
def test_data_files_are_what_the_generator_writes(stream_data: Path) -> None:
    """The constructed files are reproducible from make_streams.py (no hand edits drift)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_streams", stream_data / "make_streams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, build in (("split.json", module.split), ("pagination.json", module.pagination),
                        ("expired.json", module.expired)):
        assert json.loads((stream_data / name).read_text()) == json.loads(json.dumps(build())), name


# -- splits and closed shards ----------------------------------------------------------------------
def test_split_parent_then_both_children_exact_order(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("split.json")
    result = reader_for(fake).drain()
    assert sequences(result) == expected(data)
    seqs = all_sequences(result)
    assert len(seqs) == len(set(seqs)) == 10


def test_children_are_not_read_before_the_parent_is_exhausted(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("split.json")
    parent, left, right = (shard for shard, _ in data["expected"])
    reader_for(fake).drain()
    closing = fake.events.index(("page", parent, "1", "closed"))
    first_child_touch = min(i for i, event in enumerate(fake.events) if event[1] in (left, right))
    assert closing < first_child_touch
    # the parent's pages were 2, 2 and a last one of 1 without NextShardIterator
    assert [e for e in fake.events if e[0] == "page" and e[1] == parent] == [
        ("page", parent, "2", "open"), ("page", parent, "2", "open"), ("page", parent, "1", "closed")]


def test_a_split_in_one_poll_reads_children_in_the_same_poll(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("split.json")
    batch = reader_for(fake).poll()
    assert sequences(batch) == expected(data)


def test_closed_shard_whose_only_page_holds_every_record(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("split.json")
    _, _, right = (shard for shard, _ in data["expected"])
    reader = reader_for(fake)
    reader.drain()
    right_pages = [e for e in fake.events if e[0] == "page" and e[1] == right]
    assert right_pages == [("page", right, "2", "closed")]
    assert right in reader.exhausted()


def test_split_while_reading_keeps_the_parents_tail_and_then_reads_children(
    fake_streams: Any, wire_record: Any
) -> None:
    fake = fake_streams(get_records_page_size=3)
    fake.add_shard("shardId-parent-0000000000000001")
    fake.append("shardId-parent-0000000000000001", *(wire_record(f"{n:03d}") for n in range(1, 5)))
    reader = reader_for(fake)
    first = reader.poll()
    assert sequences(first) == [("shardId-parent-0000000000000001", ["001", "002", "003", "004"])]
    # More writes land in the parent, then it splits: the tail must come before any child record.
    fake.append("shardId-parent-0000000000000001", wire_record("005"), wire_record("006"))
    fake.close("shardId-parent-0000000000000001")
    fake.add_shard("shardId-child-a-000000000000001", "shardId-parent-0000000000000001")
    fake.add_shard("shardId-child-b-000000000000001", "shardId-parent-0000000000000001")
    fake.append("shardId-child-a-000000000000001", wire_record("007"), wire_record("009"))
    fake.append("shardId-child-b-000000000000001", wire_record("008"))
    reader.refresh_interval = 3600.0  # only the parent's closing may trigger the new listing
    second = reader.poll()
    assert sequences(second) == [
        ("shardId-parent-0000000000000001", ["005", "006"]),
        ("shardId-child-a-000000000000001", ["007", "009"]),
        ("shardId-child-b-000000000000001", ["008"]),
    ]
    assert reader.poll() == []
    fake.append("shardId-child-b-000000000000001", wire_record("010"))
    assert sequences(reader.poll()) == [("shardId-child-b-000000000000001", ["010"])]


def test_open_parent_holds_its_children_back(fake_streams: Any, wire_record: Any) -> None:
    """A child listed while its parent is still open (not yet read to its end) waits."""
    fake = fake_streams()
    fake.add_shard("shardId-parent-0000000000000001")
    fake.add_shard("shardId-child-0000000000000001", "shardId-parent-0000000000000001")
    fake.append("shardId-parent-0000000000000001", wire_record("001"))
    fake.append("shardId-child-0000000000000001", wire_record("002"))
    reader = reader_for(fake)
    assert sequences(reader.poll()) == [("shardId-parent-0000000000000001", ["001"])]
    assert not any(e[1] == "shardId-child-0000000000000001" for e in fake.events)
    fake.close("shardId-parent-0000000000000001")
    assert sequences(reader.poll()) == [("shardId-child-0000000000000001", ["002"])]


# -- DescribeStream pagination and lineage ---------------------------------------------------------
def test_shards_paginates_describe_stream_and_orders_by_lineage(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("pagination.json")
    reader = reader_for(fake)
    shards = reader.shards()
    assert [s["ShardId"] for s in shards] == data["lineage"]
    starts = [call["ExclusiveStartShardId"] for op, call in fake.log if op == "DescribeStream"]
    listed = [s["ShardId"] for s in data["Shards"]]
    # pages of 2: start, after the 2nd, after the 4th, after the 6th (full page -> one more, empty)
    assert starts == [None, listed[1], listed[3], listed[5]]


def test_pagination_stream_drains_every_lineage_in_order(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("pagination.json")
    reader = reader_for(fake)
    assert sequences(reader.drain()) == expected(data)
    closed = [s["ShardId"] for s in data["Shards"] if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert sorted(reader.exhausted()) == sorted(closed)


def test_lineage_order_rules() -> None:
    def ids(*pairs: tuple[str, str | None]) -> list[str]:
        shards = [{"ShardId": s, **({"ParentShardId": p} if p else {})} for s, p in pairs]
        return [s["ShardId"] for s in lineage_order(shards)]

    # children listed before the parent; an orphan (parent trimmed away) is a root
    assert ids(("c1", "p"), ("c2", "p"), ("p", None), ("o", "gone")) == ["p", "c1", "c2", "o"]
    # a chain listed backwards
    assert ids(("d", "c"), ("c", "b"), ("b", "a"), ("a", None)) == ["a", "b", "c", "d"]
    # a cycle never seen from AWS still comes out, after the rest
    assert ids(("x", "y"), ("y", "x"), ("r", None)) == ["r", "x", "y"]


# -- expired and trimmed iterators -----------------------------------------------------------------
def test_expired_iterator_mid_read_loses_and_repeats_nothing(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("expired.json")
    reader = reader_for(fake)
    result = reader.drain()
    assert sequences(result) == expected(data)
    seqs = all_sequences(result)
    assert len(seqs) == len(set(seqs))
    open_shard, closed_shard = (shard for shard, _ in data["expected"])
    reacquired = [(c["ShardIteratorType"], c["SequenceNumber"]) for op, c in fake.log
                  if op == "GetShardIterator" and c["ShardId"] == open_shard]
    # first TRIM_HORIZON; after the expiry: after record 2; after the trimmed error: after record 4
    assert reacquired == [("TRIM_HORIZON", None),
                          ("AFTER_SEQUENCE_NUMBER", data["expected"][0][1][1]),
                          ("AFTER_SEQUENCE_NUMBER", data["expected"][0][1][3])]
    # nothing seen yet on the closed shard when its iterator expired: TRIM_HORIZON again
    assert [(c["ShardIteratorType"], c["SequenceNumber"]) for op, c in fake.log
            if op == "GetShardIterator" and c["ShardId"] == closed_shard] == [
        ("TRIM_HORIZON", None), ("TRIM_HORIZON", None)]
    assert reader.state[open_shard].reacquired == 2
    assert closed_shard in reader.exhausted()


def test_position_past_retention_goes_on_from_trim_horizon_and_says_so(
    fake_streams: Any, wire_record: Any
) -> None:
    fake = fake_streams(get_records_page_size=2)
    fake.add_shard("shardId-only-00000000000000001")
    fake.append("shardId-only-00000000000000001", *(wire_record(f"{n:03d}") for n in range(1, 7)))
    reader = reader_for(fake)
    assert sequences(reader.poll()) == [("shardId-only-00000000000000001",
                                         ["001", "002", "003", "004", "005", "006"])]
    # Records 1-6 fall off the stream and the iterator expires: AFTER 006 is trimmed.
    fake.append("shardId-only-00000000000000001", wire_record("007"))
    fake.trimmed["shardId-only-00000000000000001"] = 6
    fake.faults.append({"op": "GetRecords", "shard": "shardId-only-00000000000000001",
                        "call": fake._reads["shardId-only-00000000000000001"] + 1,
                        "error": "ExpiredIteratorException"})
    fake.faults.append({"op": "GetShardIterator", "shard": "shardId-only-00000000000000001",
                        "type": "AFTER_SEQUENCE_NUMBER", "error": "TrimmedDataAccessException"})
    assert sequences(reader.poll()) == [("shardId-only-00000000000000001", ["007"])]
    assert reader.state["shardId-only-00000000000000001"].trimmed == ["006"]


def test_an_iterator_that_keeps_failing_raises_instead_of_spinning(fake_streams: Any) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-only-00000000000000001")
    fake.faults.extend({"op": "GetRecords", "shard": "shardId-only-00000000000000001", "call": n,
                        "error": "ExpiredIteratorException"} for n in range(1, 50))
    reader = reader_for(fake, max_reacquire=3)
    with pytest.raises(RuntimeError, match="4 iterators in a row failed"):
        reader.poll()
    assert sum(op == "GetRecords" for op, _ in fake.log) == 4


def test_other_errors_are_not_swallowed(fake_streams: Any) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-only-00000000000000001")
    fake.faults.append({"op": "GetRecords", "shard": "shardId-only-00000000000000001", "call": 1,
                        "error": "InternalServerError"})
    with pytest.raises(Exception, match="InternalServerError"):
        reader_for(fake).poll()


# -- incremental polling and LATEST ----------------------------------------------------------------
def test_poll_returns_only_new_records_and_remembers_positions(fake_streams: Any, wire_record: Any) -> None:
    fake = fake_streams(get_records_page_size=2)
    fake.add_shard("shardId-only-00000000000000001")
    reader = reader_for(fake)
    assert reader.poll() == []
    fake.append("shardId-only-00000000000000001", wire_record("001"), wire_record("002"),
                wire_record("003"))
    assert sequences(reader.poll()) == [("shardId-only-00000000000000001", ["001", "002", "003"])]
    assert reader.poll() == []
    fake.append("shardId-only-00000000000000001", wire_record("004"))
    assert sequences(reader.poll()) == [("shardId-only-00000000000000001", ["004"])]
    assert reader.positions() == {"shardId-only-00000000000000001": "004"}
    # one iterator for the whole life of the shard: positions come from NextShardIterator
    assert sum(op == "GetShardIterator" for op, _ in fake.log) == 1


def test_latest_skips_history_and_closed_shards_but_reads_new_shards_from_the_start(
    fake_streams: Any, wire_record: Any
) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-old-000000000000000001")
    fake.append("shardId-old-000000000000000001", wire_record("001"))
    fake.close("shardId-old-000000000000000001")
    fake.add_shard("shardId-open-00000000000000001", "shardId-old-000000000000000001")
    fake.append("shardId-open-00000000000000001", wire_record("002"))
    # (iterator renewal on idle shards is off here: this test counts GetShardIterator calls)
    reader = reader_for(fake, starting_position="LATEST", idle_reacquire_s=float("inf"))
    # written after the reader was made, before its first poll: must be read
    fake.append("shardId-open-00000000000000001", wire_record("003"))
    assert sequences(reader.poll()) == [("shardId-open-00000000000000001", ["003"])]
    fake.append("shardId-open-00000000000000001", wire_record("004"))
    fake.close("shardId-open-00000000000000001")
    fake.add_shard("shardId-new-000000000000000001", "shardId-open-00000000000000001")
    fake.append("shardId-new-000000000000000001", wire_record("005"), wire_record("006"))
    assert sequences(reader.poll()) == [("shardId-open-00000000000000001", ["004"]),
                                        ("shardId-new-000000000000000001", ["005", "006"])]
    kinds = [(c["ShardId"], c["ShardIteratorType"]) for op, c in fake.log if op == "GetShardIterator"]
    assert kinds == [("shardId-open-00000000000000001", "LATEST"),
                     ("shardId-new-000000000000000001", "TRIM_HORIZON")]


def test_an_idle_shard_renews_its_iterator_after_the_last_record_seen(
    fake_streams: Any, wire_record: Any
) -> None:
    # Given a reader whose shard went idle (moto pins an iterator to a table object it replaces
    # on a failed conditional write, so an old iterator would never see a record again)
    fake = fake_streams()
    fake.add_shard("shardId-a-000000000000000000001")
    fake.append("shardId-a-000000000000000000001", wire_record("001"))
    now = [0.0]
    reader = reader_for(fake, clock=lambda: now[0], idle_reacquire_s=0.5)
    assert sequences(reader.poll()) == [("shardId-a-000000000000000000001", ["001"])]
    # When time passes with nothing new and a record then arrives
    now[0] = 1.0
    assert reader.poll() == []
    fake.append("shardId-a-000000000000000000001", wire_record("002"))
    now[0] = 1.1
    # Then the next read starts from a fresh iterator after record 001, and 002 arrives once
    assert sequences(reader.poll()) == [("shardId-a-000000000000000000001", ["002"])]
    renewals = [c for op, c in fake.log if op == "GetShardIterator"
                and c["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"]
    assert [c["SequenceNumber"] for c in renewals] == ["001"]


def test_arguments_are_checked(fake_streams: Any) -> None:
    fake = fake_streams()
    with pytest.raises(ValueError, match="limit"):
        StreamReader(fake, fake.stream_arn, limit=1001)
    with pytest.raises(ValueError, match="starting_position"):
        StreamReader(fake, fake.stream_arn, starting_position="AT_SEQUENCE_NUMBER")  # type: ignore[arg-type]


# -- bounded calls ---------------------------------------------------------------------------------
def test_drain_of_an_idle_stream_is_a_few_bounded_calls(fake_streams: Any, wire_record: Any) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-only-00000000000000001")
    fake.append("shardId-only-00000000000000001", *(wire_record(f"{n:03d}") for n in range(1, 4)))
    clock = FakeClock()
    reader = StreamReader(fake, fake.stream_arn, sleep=clock.sleep, clock=clock, poll_interval=0.1)
    result = reader.drain(idle_polls=3)
    assert all_sequences(result) == ["001", "002", "003"]
    # poll 1: a page of 3 then an empty page; polls 2-4 (idle): one empty page each
    assert sum(op == "GetRecords" for op, _ in fake.log) == 5
    assert sum(op == "DescribeStream" for op, _ in fake.log) == 1
    assert clock.sleeps == [pytest.approx(0.1), pytest.approx(0.1)]  # between empty polls only


def test_drain_gives_up_on_a_stream_that_never_goes_quiet(fake_streams: Any, wire_record: Any) -> None:
    fake = fake_streams()
    fake.add_shard("shardId-only-00000000000000001")
    clock = FakeClock()
    counter = iter(range(1, 10_000))
    original = fake.get_records

    def busy(ShardIterator: str, Limit: int | None = None) -> Any:
        fake.append("shardId-only-00000000000000001", wire_record(f"{next(counter):05d}"))
        clock.now += 1.0
        return original(ShardIterator, Limit)

    fake.get_records = busy  # type: ignore[method-assign]
    reader = StreamReader(fake, fake.stream_arn, sleep=clock.sleep, clock=clock, max_pages=1)
    with pytest.raises(StreamReadTimeout) as raised:
        reader.drain(timeout=10.0)
    got = all_sequences(raised.value.records)
    assert got == sorted(got) and len(got) == len(set(got)) >= 10


# -- recorded from DynamoDB Local ------------------------------------------------------------------
def test_recorded_dynamodb_local_stream_comes_back_as_boto3_gives_it(fake_streams: Any) -> None:
    fake, data = fake_streams.from_file("ddblocal_closed_shard.json")
    assert data["recorded_pages"] == [2, 2, 1] and data["recorded_last_page_has_next"] is False
    reader = reader_for(fake)
    result = reader.drain()
    assert sequences(result) == expected(data)
    [(shard, records)] = result.items()
    assert reader.exhausted() == [shard]
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "MODIFY", "INSERT", "REMOVE"]
    first = records[0]["dynamodb"]
    assert first["Keys"] == {"pk": {"B": b"\x00\x01"}, "sk": {"B": b"\xff"}}
    assert isinstance(first["ApproximateCreationDateTime"], datetime.datetime)
    assert first["ApproximateCreationDateTime"].second == 0  # DynamoDB Local rounds to the minute
    assert records[1]["dynamodb"]["NewImage"]["bs"] == {"BS": [b"\x01", b"\x02"]}
    assert records[2]["dynamodb"]["OldImage"]["n"] == {"N": "1"}
    assert records[2]["dynamodb"]["NewImage"]["n"] == {"N": "2"}
    assert {r["awsRegion"] for r in records} == {"ddblocal"}
