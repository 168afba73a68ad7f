"""harness.lane: one handler under test between a stream and a target, checked against the table.

The runner, replay, chaos and the pytest plugin's ``Replication`` are built on it; these are the
two defects of issue 20 that came from each of them wiring its own copy: replay with a transform
reported every document changed (its expected documents had no transforms), and the plugin's
``Replication`` on a KEYS_ONLY table quarantined every record (it had no item reader).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec, source_backend, started
from harness.captures.format import Capture, load_capture_dir
from harness.captures.replay import replay
from harness.convergence import check
from harness.lane import Lane
from harness.replication import Replication
from replicator.expected import planner_for
from replicator.readback import DynamoDBItemReader
from replicator.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dynamodb-local"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000"
TRANSFORM = "replicator.transforms.example"


def test_replay_with_a_transform_converges(mongoeco_db: Any) -> None:
    capture = load_capture_dir(FIXTURES / "seed_table")
    collection = mongoeco_db["seed"]
    result = replay(capture, collection, settings=Settings(transforms=(TRANSFORM,)))
    assert result.error is None
    assert result.diff is not None and result.diff.converged, result.diff.as_dict()
    assert result.diff.expected_count == len(capture.final_items or []) == 16
    # The transform ran (every document has its default), so expected documents without it
    # would not match: the check above compared what the transform made.
    assert all("age" in document for document in collection.find({}))
    without = dataclasses.replace(Settings(transforms=()), key_schema=capture.table.key_schema)
    assert not check(capture.final_items or [], collection, planner_for(without)).converged


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE"])
def test_the_plugins_replication_on_a_read_back_stream_converges(mongoeco_db: Any, view: str) -> None:
    # The object the plugin's ``replication`` fixture hands out, on a source of this test's own
    # (the plugin's in-process moto lives for the whole session, and other tests start theirs).
    with started(source_backend("moto")) as source:
        table = source.create_table(TableSpec("orders", ("id", "S"), stream_view_type=view))
        running = Replication(source, table, mongoeco_db["orders"])
        try:
            assert isinstance(running.lane.item_reader, DynamoDBItemReader)
            client = running.dynamodb
            for number in range(6):
                client.put_item(TableName=running.table_name,
                                Item={"id": {"S": f"o{number}"}, "qty": {"N": str(number)}})
            client.update_item(TableName=running.table_name, Key={"id": {"S": "o1"}},
                               UpdateExpression="SET qty = :q",
                               ExpressionAttributeValues={":q": {"N": "9"}})
            client.delete_item(TableName=running.table_name, Key={"id": {"S": "o2"}})
            diff = running.assert_converged()
            assert diff.expected_count == diff.actual_count == 5
            assert running.document("o1") == {"_id": "o1", "id": "o1", "qty": 9}
            assert running.report.discarded == []
            assert mongoeco_db["orders_quarantine"].count_documents({}) == 0
        finally:
            running.close()
            source.delete_table(table)


def test_a_lanes_handler_and_its_diff_share_the_settings(mongoeco_db: Any) -> None:
    # The handler writes with the settings' transform and the diff expects it: one planner.
    settings = Settings(key_schema=("id",), transforms=(TRANSFORM,))
    lane = Lane("replicator", mongoeco_db["lane"], settings, stream_arn=ARN, partition_key="id")
    try:
        record = {
            "eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
            "eventSourceARN": ARN, "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {"id": {"S": "a"}}, "NewImage": {"id": {"S": "a"}},
                         "SequenceNumber": "100", "SizeBytes": 10,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
        }
        lane.feed("shardId-1", [record])
        report = lane.drain()
        assert report.invocations == 1 and report.discarded == []
        assert lane.diff([{"id": {"S": "a"}}]).converged
        assert mongoeco_db["lane"].find_one({"_id": "a"})["age"] == 0
        assert not lane.diff([{"id": {"S": "a"}, "age": {"N": "3"}}]).converged
    finally:
        lane.close()


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE"])
def test_replay_of_a_read_back_stream_reads_the_captures_final_items(
    mongoeco_db: Any, view: str
) -> None:
    # The seed capture as a KEYS_ONLY (or OLD_IMAGE) stream would have carried it: no new images.
    seed = load_capture_dir(FIXTURES / "seed_table")
    records = []
    for record in seed.records:
        body = {k: v for k, v in record["dynamodb"].items()
                if k != "NewImage" and (view == "OLD_IMAGE" or k != "OldImage")}
        records.append({**record, "dynamodb": {**body, "StreamViewType": view}})
    capture = Capture(dataclasses.replace(seed.table, stream_view_type=view),
                      {"Records": records}, seed.final_items)
    result = replay(capture, mongoeco_db["seed"])
    assert result.error is None
    assert result.diff is not None and result.diff.converged, result.diff.as_dict()
    assert mongoeco_db["seed_quarantine"].count_documents({}) == 0
    assert mongoeco_db["seed"].count_documents({}) == 16
