"""``replicator redrive`` (replicator/redrive.py, replicator/cli/redrive.py): the ranges a Lambda
event source mapping discarded to its on-failure queue, read back from the stream and applied.

The discarded ranges come from the harness's event-source-mapping emulation (a function that
always fails, retries exhausted, its on-failure record sent to a moto SQS queue); the stream is
moto's, the target mongoeco's wire server through the real pymongo client. Trimming (records
older than the stream's 24 hours) is emulated by the harness's ``TrimmedStreams`` and by
``FakeStreams.trimmed`` (TrimmedDataAccessException, as DynamoDB Streams answers).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from poller_helpers import diff, make_table

from harness.backends.moto_source import make_client
from harness.esm.config import EsmConfig
from harness.esm.mapping import EventSourceMapping
from harness.migration import TrimmedStreams
from replicator import cli
from replicator.cli import endpoints
from replicator.cli.redrive import EXIT_RECOVER
from replicator.errors import OnFailureMessageError, RangeUnavailable
from replicator.poller.streams import StreamReader
from replicator.redrive import batch_info

SHARD = "shardId-00000000000000000001-aaaaaaaa"




# -- the message -------------------------------------------------------------------------------------
def emulated_message(fake_streams: Any, wire_record: Any) -> dict[str, Any]:
    """The on-failure record the emulation writes for records 002..004 of a failing function."""
    received: list[dict[str, Any]] = []

    def failing(event: dict[str, Any]) -> Any:
        raise RuntimeError("MongoDB unreachable")

    esm = EventSourceMapping(failing, EsmConfig(batch_size=3, maximum_retry_attempts=0),
                             stream_arn=fake_streams.stream_arn, on_failure=received.append,
                             sleep=lambda _: None)
    esm.feed(SHARD, [wire_record(f"{n:03d}") for n in (2, 3, 4)])
    esm.drain()
    esm.close()
    assert len(received) == 1
    return received[0]


def test_the_emulations_on_failure_record_is_read(fake_streams: Any, wire_record: Any) -> None:
    fake = fake_streams()
    message = emulated_message(fake, wire_record)
    info = batch_info(json.dumps(message))
    assert (info.stream_arn, info.shard_id, info.start, info.end) == (
        fake.stream_arn, SHARD, "002", "004")
    assert info.batch_size == 3 and info.condition == "RetryAttemptsExhausted"
    # An SQS queue subscribed to an SNS destination without raw delivery gets an envelope.
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(message)}
    assert batch_info(json.dumps(envelope)) == info


@pytest.mark.parametrize(("body", "named"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"version": "1.0"}', "no DDBStreamBatchInfo"),
    ('{"DDBStreamBatchInfo": {"streamArn": "a", "shardId": "s", "startSequenceNumber": "1"}}',
     "DDBStreamBatchInfo.endSequenceNumber is missing"),
    ('{"DDBStreamBatchInfo": {"streamArn": "a", "shardId": "s", "startSequenceNumber": "9",'
     ' "endSequenceNumber": "1"}}', "before startSequenceNumber"),
])
def test_a_message_that_is_not_a_stream_batch_record_names_what_is_missing(
    body: str, named: str,
) -> None:
    with pytest.raises(OnFailureMessageError, match=named):
        batch_info(body)


# -- reading a range -----------------------------------------------------------------------------------
def sequences(pages: Any) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for page in pages for r in page]


def test_read_range_returns_exactly_the_range_across_pages_and_an_expired_iterator(
    fake_streams: Any, wire_record: Any,
) -> None:
    fake = fake_streams()
    fake.add_shard(SHARD)
    fake.append(SHARD, *(wire_record(f"{n:03d}") for n in range(1, 11)))
    fake.get_records_page_size = 2
    fake.faults.append({"op": "GetRecords", "shard": SHARD, "call": 2,
                        "error": "ExpiredIteratorException"})
    reader = StreamReader(fake, fake.stream_arn, limit=2)
    assert sequences(reader.read_range(SHARD, "003", "007")) == ["003", "004", "005", "006", "007"]
    iterators = [r for op, r in fake.log if op == "GetShardIterator"]
    assert [(r["ShardIteratorType"], r["SequenceNumber"]) for r in iterators] == [
        ("AT_SEQUENCE_NUMBER", "003"), ("AFTER_SEQUENCE_NUMBER", "004")]
    # it stops at the range's end: no page after the one holding 007
    assert fake.log[-1][0] == "GetRecords" and reader.calls["GetRecords"] == 4


def test_read_range_of_a_trimmed_start_or_a_gone_shard_is_unavailable(
    fake_streams: Any, wire_record: Any,
) -> None:
    fake = fake_streams()
    fake.add_shard(SHARD)
    fake.append(SHARD, *(wire_record(f"{n:03d}") for n in range(1, 6)))
    fake.trimmed[SHARD] = 2  # records 001 and 002 are past the retention period
    reader = StreamReader(fake, fake.stream_arn)
    with pytest.raises(RangeUnavailable, match="TrimmedDataAccessException") as trimmed:
        list(reader.read_range(SHARD, "002", "004"))
    assert (trimmed.value.shard_id, trimmed.value.start, trimmed.value.end) == (SHARD, "002", "004")
    with pytest.raises(RangeUnavailable, match="ResourceNotFoundException"):
        list(reader.read_range("shardId-gone", "002", "004"))
    assert sequences(reader.read_range(SHARD, "003", "005")) == ["003", "004", "005"]


def test_read_range_past_a_closed_shards_end_is_unavailable(fake_streams: Any,
                                                            wire_record: Any) -> None:
    fake = fake_streams()
    fake.add_shard(SHARD)
    fake.append(SHARD, *(wire_record(f"{n:03d}") for n in range(1, 4)))
    fake.close(SHARD)
    with pytest.raises(RangeUnavailable, match="before endSequenceNumber 009"):
        list(StreamReader(fake, fake.stream_arn).read_range(SHARD, "002", "009"))


# -- the command on moto's SQS and stream ------------------------------------------------------------
class Discarded:
    """A moto table whose stream's records a failing function discarded to a moto SQS queue."""

    def __init__(self, source: Any, name: str = "orders", endpoint_url: str | None = None) -> None:
        self.source = source
        self.table = make_table(source, name)
        self.sqs = make_client("sqs", endpoint_url=endpoint_url)
        self.queue = self.sqs.create_queue(QueueName=f"{name}-on-failure")["QueueUrl"]
        self.parking = self.sqs.create_queue(QueueName=f"{name}-needs-recover")["QueueUrl"]
        self.client = source.dynamodb()

    def write(self, keys: range) -> None:
        for n in keys:
            self.client.put_item(TableName=self.table.spec.name,
                                 Item={"pk": {"S": f"k{n}"}, "n": {"N": str(n)}})

    def failing_mapping(self, stream_arn: str, batch_size: int,
                        maximum_retry_attempts: int = 0) -> EventSourceMapping:
        """The emulated mapping of ``stream_arn`` to a function that always fails (MongoDB
        unreachable), its on-failure destination this queue (the message as AWS sends it)."""

        def failing(event: dict[str, Any]) -> Any:
            raise RuntimeError("MongoDB unreachable")

        def send(message: dict[str, Any]) -> None:
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps(message))

        return EventSourceMapping(failing, EsmConfig(batch_size=batch_size,
                                                     maximum_retry_attempts=maximum_retry_attempts),
                                  stream_arn=stream_arn, on_failure=send, sleep=lambda _: None)

    def discard_everything(self) -> list[str]:
        """Feed the whole stream to a function that always fails; each discarded batch's
        on-failure record goes to the queue. Returns the stream's sequence numbers."""
        records = StreamReader(self.source.streams(), self.table.stream_arn,
                               sleep=lambda _: None).drain(idle_polls=1)
        esm = self.failing_mapping(self.table.stream_arn, batch_size=4, maximum_retry_attempts=1)
        for shard_id, shard_records in records.items():
            esm.feed(shard_id, shard_records)
        esm.drain()
        esm.close()
        return [r["dynamodb"]["SequenceNumber"] for rs in records.values() for r in rs]

    def messages(self, queue: str | None = None) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=queue or self.queue, MaxNumberOfMessages=10,
                                          VisibilityTimeout=0)
        return list(answer.get("Messages", []))


@pytest.fixture
def discarded(moto: Any, monkeypatch: pytest.MonkeyPatch) -> Discarded:
    setup = Discarded(moto)

    def aws_client(args: Any, environ: Any, service: str, endpoint_url: str | None = None) -> Any:
        return moto.streams() if service == "dynamodbstreams" else make_client(service)

    monkeypatch.setattr(endpoints, "aws_client", aws_client)
    return setup


def redrive(uri: str, database: str, queue: str, *extra: str) -> int:
    return cli.main(["redrive", "--table", "orders", "--mongodb-uri", uri, "--database", database,
                     "--queue-url", queue, "--wait-seconds", "0", *extra])


@pytest.mark.slow
def test_a_discarded_range_is_applied_and_its_message_deleted(
    discarded: Discarded, mongoeco_server_uri: str, restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pymongo import MongoClient

    discarded.write(range(10))
    discarded.client.delete_item(TableName="orders", Key={"pk": {"S": "k3"}})
    discarded.client.put_item(TableName="orders", Item={"pk": {"S": "k4"}, "n": {"N": "40"}})
    stream = discarded.discard_everything()
    assert len(stream) == 12 and len(discarded.messages()) == 3  # batches of 4: 3 discarded
    uri = f"{mongoeco_server_uri}?directConnection=true"

    code = redrive(uri, "redrive_applied", discarded.queue)
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 4  # one per message, then the summary
    assert all(line.startswith("applied message ") and line.endswith("message deleted")
               for line in lines[:3])
    assert ("3 messages: 3 applied, 0 would apply, 0 not in the stream, 0 failed, 0 unreadable, "
            "0 of another table; 12 records read (12 written, 0 already newer, 0 quarantined); "
            "messages: 3 deleted, 0 moved, 0 kept") in lines[3]
    assert discarded.messages() == []
    with MongoClient(uri) as client:
        collection = client["redrive_applied"]["orders"]
        assert diff(discarded.source, discarded.table, collection).converged
        assert collection.find_one({"_id": "k4"})["n"] == 40

    # The same range again (a message delivered twice): the guard makes it harmless.
    discarded.discard_everything()
    assert redrive(uri, "redrive_applied", discarded.queue, "--max-messages", "1") == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 messages: 1 applied" in summary and "4 records read (0 written, 4 already newer" in summary
    assert len(discarded.messages()) == 2


@pytest.mark.slow
def test_a_trimmed_range_is_reported_with_the_recover_command_and_kept(
    discarded: Discarded, mongoeco_server_uri: str, restore_logging: None,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pymongo import MongoClient

    discarded.write(range(8))
    stream = discarded.discard_everything()  # two messages: records 1-4 and 5-8
    trimmed = TrimmedStreams(discarded.source.streams(), stream[5])  # up to the 6th expired

    def aws_client(args: Any, environ: Any, service: str, endpoint_url: str | None = None) -> Any:
        return trimmed if service == "dynamodbstreams" else make_client(service)

    monkeypatch.setattr(endpoints, "aws_client", aws_client)
    uri = f"{mongoeco_server_uri}?directConnection=true"

    code = redrive(uri, "redrive_trimmed", discarded.queue, "--dry-run")
    out = capsys.readouterr().out
    assert code == EXIT_RECOVER == 3
    assert out.count("not-in-stream message ") == 2 and "message kept" in out
    assert len(discarded.messages()) == 2

    code = redrive(uri, "redrive_trimmed", discarded.queue, "--move-unavailable-to", discarded.parking)
    out, err = capsys.readouterr()
    assert code == 3, out + err
    lines = out.strip().splitlines()
    assert lines[0].startswith("not-in-stream message ")
    assert "the records before it were trimmed" in lines[0] and "message moved" in lines[0]
    first, second = (batch_info(m["Body"]) for m in
                     sorted(discarded.messages(discarded.parking), key=lambda m: batch_info(
                         m["Body"]).start.zfill(40)))
    assert (first.start, first.end, second.start, second.end) == (
        stream[0], stream[3], stream[4], stream[7])
    named = [line.split("repair: ", 1)[1] for line in lines[:2]]
    assert sorted(named) == sorted(
        "replicator recover --table orders --database redrive_trimmed --last-applied-sequence "
        f"{int(info.end) - 1} --last-applied-at {info.first_arrival} "
        "--mongodb-uri <the same URI> --yes" for info in (first, second))
    assert "2 not in the stream" in lines[2] and "0 written" in lines[2]
    assert "2 moved, 0 kept" in lines[2]
    assert discarded.messages() == [] and len(discarded.messages(discarded.parking)) == 2
    with MongoClient(uri) as client:
        assert client["redrive_trimmed"]["orders"].count_documents({}) == 0
    # the summary's command (the highest range) repairs every range: run it as printed
    assert lines[3].startswith("repair what the stream no longer holds")
    command = lines[4].strip().replace("<the same URI>", uri).split()
    assert command[:2] == ["replicator", "recover"] and command[-1] == "--yes"
    assert f"--last-applied-sequence {int(second.end) - 1}" in lines[4]
    assert cli.main(command[1:]) == 0
    with MongoClient(uri) as client:
        assert diff(discarded.source, discarded.table, client["redrive_trimmed"]["orders"]).converged


@pytest.mark.slow
def test_a_password_in_the_uri_never_reaches_the_output(
    discarded: Discarded, restore_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    discarded.write(range(6))
    discarded.discard_everything()  # two messages
    # Nothing listens on port 9: every write fails; the range is kept, the run stops (the next
    # range would fail the same way) and exits 1.
    uri = "mongodb://redriver:s3cr3t-pw@127.0.0.1:9/app?serverSelectionTimeoutMS=50"
    code = redrive(uri, "app", discarded.queue, "--max-attempts", "1")
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAILED, out + err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("failed message ")
    assert "message kept; run redrive again" in lines[0]
    assert "1 messages: 0 applied" in lines[1] and "1 failed" in lines[1]
    assert "0 deleted, 0 moved, 1 kept; stopped at the failed message" in lines[1]
    assert "s3cr3t-pw" not in out + err
    assert len(discarded.messages()) == 2  # both visible again at once


@pytest.mark.slow
def test_a_message_of_another_table_or_not_a_batch_record_is_kept(
    discarded: Discarded, mongoeco_server_uri: str, restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = {"DDBStreamBatchInfo": {
        "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/invoices/stream/2026-01-01",
        "shardId": SHARD, "startSequenceNumber": "100", "endSequenceNumber": "200"}}
    discarded.sqs.send_message(QueueUrl=discarded.queue, MessageBody=json.dumps(other))
    discarded.sqs.send_message(QueueUrl=discarded.queue, MessageBody="hello")
    code = redrive(f"{mongoeco_server_uri}?directConnection=true", "redrive_other",
                   discarded.queue)
    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILED, out
    lines = sorted(out.strip().splitlines()[:2])
    assert lines[0].startswith("other-table message ") and "of table invoices" in lines[0]
    assert lines[1].startswith("unreadable message ") and "not JSON" in lines[1]
    assert "1 unreadable, 1 of another table" in out and "0 deleted, 0 moved, 2 kept" in out
    assert len(discarded.messages()) == 2


# -- the command as a process: moto's server, mongoeco's wire server ---------------------------------
@pytest.mark.slow
def test_redrive_as_a_process_applies_the_ranges_and_empties_the_queue(
    mongoeco_server_uri: str,
) -> None:
    import subprocess

    from pymongo import MongoClient

    from harness.backends.base import started
    from harness.backends.moto_source import MotoServerSource
    from support.replicator_command import ROOT, child_env, replicator_command

    with started(MotoServerSource()) as server:
        endpoint = server.endpoint_url()
        setup = Discarded(server, endpoint_url=endpoint)
        setup.write(range(6))
        setup.discard_everything()
        assert len(setup.messages()) == 2
        uri = f"{mongoeco_server_uri}?directConnection=true"
        done = subprocess.run(
            replicator_command("redrive", "--table", "orders", "--database", "redrive_process",
                               "--queue-url", setup.queue, "--endpoint-url", endpoint,
                               "--wait-seconds", "0"),
            capture_output=True, text=True, env=child_env(MONGODB_URI=uri), cwd=ROOT,
            timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines[:2]] == ["applied", "applied"]
        assert "2 messages: 2 applied" in lines[2] and "6 records read (6 written" in lines[2]
        assert setup.messages() == []
        with MongoClient(uri) as client:
            assert diff(server, setup.table, client["redrive_process"]["orders"]).converged


# -- a Kinesis event source mapping's messages (KinesisBatchInfo) ------------------------------------
def kinesis_message(stream_arn: str, shard_id: str, start: str, end: str,
                    size: int) -> dict[str, Any]:
    """A Kinesis mapping's on-failure record (AWS Lambda docs, "Retaining records of discarded
    batches for a Kinesis Data Streams event source", example invocation record)."""
    return {"requestContext": {"requestId": "c9b8fa9f", "functionArn": "arn:aws:lambda:us-east-1:"
                               "123456789012:function:replicator", "condition":
                               "RetryAttemptsExhausted", "approximateInvokeCount": 3},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                "functionError": "Unhandled"},
            "version": "1.0", "timestamp": "2026-12-07T16:00:00.000Z",
            "KinesisBatchInfo": {"shardId": shard_id, "startSequenceNumber": start,
                                 "endSequenceNumber": end,
                                 "approximateArrivalOfFirstRecord": "2026-12-07T15:59:00Z",
                                 "approximateArrivalOfLastRecord": "2026-12-07T15:59:01Z",
                                 "batchSize": size, "streamArn": stream_arn}}


def test_a_kinesis_message_is_read() -> None:
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
    info = batch_info(json.dumps(kinesis_message(arn, "shardId-000000000001", "4955" + "1" * 52,
                                                 "4955" + "2" * 52, 500)))
    assert (info.kind, info.stream_arn, info.batch_size) == ("kinesis", arn, 500)
    assert info.table_name is None
    with pytest.raises(OnFailureMessageError, match=r"KinesisBatchInfo\.endSequenceNumber is before"):
        batch_info(json.dumps(kinesis_message(arn, "s", "9", "1", 1)))


@pytest.mark.slow
def test_a_kinesis_mappings_discarded_range_is_read_back_and_applied(
    discarded: Discarded, mongoeco_server_uri: str, restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The range of a KinesisBatchInfo message is read back from the data stream with
    KinesisReader and applied through the core (order keys: applied again, it changes nothing);
    a message of another data stream is kept, naming it; the recover line for a range the data
    stream no longer holds names the re-copy."""
    from pymongo import MongoClient

    from harness.kinesis import KdsFeed, KdsSettings

    feed = KdsFeed(make_client("kinesis"), "orders-kds", "orders",
                   KdsSettings(source="kinesis", shards=1, shuffle_window=1, duplicate_rate=0.0))
    discarded.write(range(8))
    changes = StreamReader(discarded.source.streams(), discarded.table.stream_arn,
                           sleep=lambda _: None).drain(idle_polls=1)
    feed.put([r for rs in changes.values() for r in rs])
    feed.flush()
    (shard_id, records), = feed.reader.drain(idle_polls=1).items()
    numbers = [r["kinesis"]["sequenceNumber"] for r in records]
    assert len(numbers) == 8
    send = discarded.sqs.send_message
    send(QueueUrl=discarded.queue, MessageBody=json.dumps(
        kinesis_message(feed.stream_arn, shard_id, numbers[2], numbers[5], 4)))
    uri = f"{mongoeco_server_uri}?directConnection=true"
    code = redrive(uri, "redrive_kinesis", discarded.queue, "--kinesis-stream", feed.stream_arn)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 records read (4 written, 0 already newer, 0 quarantined)" in out
    with MongoClient(uri) as client:
        collection = client["redrive_kinesis"]["orders"]
        assert sorted(d["_id"] for d in collection.find()) == ["k2", "k3", "k4", "k5"]
        assert all(d["_ddb_seq"].startswith("K") for d in collection.find())
    assert discarded.messages() == []

    # again (a message delivered twice): nothing new; another data stream's message is kept
    send(QueueUrl=discarded.queue, MessageBody=json.dumps(
        kinesis_message(feed.stream_arn, shard_id, numbers[2], numbers[5], 4)))
    other = feed.stream_arn.replace("orders-kds", "elsewhere")
    send(QueueUrl=discarded.queue, MessageBody=json.dumps(
        kinesis_message(other, shard_id, numbers[0], numbers[1], 2)))
    code = redrive(uri, "redrive_kinesis", discarded.queue, "--kinesis-stream", feed.stream_arn)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "4 records read (0 written, 4 already newer" in out
    assert f"a Kinesis range of data stream {other}" in out
    assert len(discarded.messages()) == 1

    # without --kinesis-stream a Kinesis message is kept, naming the option
    code = redrive(uri, "redrive_kinesis", discarded.queue)
    out = capsys.readouterr().out
    assert code == 1 and f"--kinesis-stream {other}" in out, out


def test_a_kinesis_range_no_longer_held_names_the_recopy() -> None:
    import argparse

    from replicator.cli.redrive import recover_command

    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
    info = batch_info(json.dumps(kinesis_message(arn, "s", "1", "2", 2)))
    args = argparse.Namespace(table="orders", migration_file=None, database=None,
                              collection=None, checkpoint_collection=None, endpoint_url=None,
                              region=None, mongodb_uri=None)
    command = recover_command(args, [info])
    assert f"replicator sync --table orders --kinesis-stream {arn} --restart" in command


@pytest.mark.slow
@pytest.mark.parametrize(("items", "batch_size", "shards"), [(7, 3, 1), (10, 4, 2)])
def test_a_kinesis_mappings_failures_walk_to_redrive_as_a_process(
    mongoeco_server_uri: str, items: int, batch_size: int, shards: int,
) -> None:
    """As a user meets it: the table's changes in a Kinesis data stream (moto's server), a
    function that always fails behind the harness's event source mapping, its on-failure records
    (KinesisBatchInfo, as AWS sends them for a Kinesis source) in an SQS queue, then
    ``replicator redrive --kinesis-stream`` as a process applies every range and empties it."""
    import subprocess

    from pymongo import MongoClient

    from harness.backends.base import started
    from harness.backends.moto_source import MotoServerSource
    from harness.kinesis import KdsFeed, KdsSettings
    from support.replicator_command import ROOT, child_env, replicator_command

    with started(MotoServerSource()) as server:
        endpoint = server.endpoint_url()
        setup = Discarded(server, endpoint_url=endpoint)
        setup.write(range(items))
        setup.client.delete_item(TableName="orders", Key={"pk": {"S": "k1"}})
        feed = KdsFeed(make_client("kinesis", endpoint_url=endpoint), "orders-kds", "orders",
                       KdsSettings(source="kinesis", shards=shards, shuffle_window=3,
                                   duplicate_rate=0.0))
        changes = StreamReader(server.streams(), setup.table.stream_arn,
                               sleep=lambda _: None).drain(idle_polls=1)
        feed.put([r for rs in changes.values() for r in rs])
        feed.flush()
        per_shard = feed.reader.drain(idle_polls=1)
        esm = setup.failing_mapping(feed.stream_arn, batch_size)
        for shard_id, records in per_shard.items():
            esm.feed(shard_id, records)
        esm.drain()
        esm.close()
        bodies = [json.loads(m["Body"]) for m in setup.messages()]
        expected = sum(-(-len(rs) // batch_size) for rs in per_shard.values())
        assert len(bodies) == expected and all("KinesisBatchInfo" in b for b in bodies)
        uri = f"{mongoeco_server_uri}?directConnection=true"
        database = f"redrive_kinesis_process_{items}"
        done = subprocess.run(
            replicator_command("redrive", "--table", "orders", "--database", database,
                               "--queue-url", setup.queue, "--endpoint-url", endpoint,
                               "--kinesis-stream", feed.stream_arn, "--wait-seconds", "0"),
            capture_output=True, text=True, env=child_env(MONGODB_URI=uri), cwd=ROOT,
            timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = done.stdout.strip().splitlines()[-1]
        assert f"{expected} messages: {expected} applied" in summary, done.stdout
        assert setup.messages() == []
        with MongoClient(uri) as client:
            assert diff(server, setup.table, client[database]["orders"]).converged
