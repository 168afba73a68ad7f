"""Issue 22, part 1: one export data file as a unit of work -- the Distributed Map's child Lambda
(replicator/export_copy_handler.py) and the AWS Batch array child (``replicator load-export-file``)
-- on moto's S3 with files in AWS's export layout, into mongoeco through the real pymongo client.

The unit must load its file exactly once however often it runs: a rerun skips it, a child that
died mid-file leaves no mark and its rerun's second writes are no-ops under the guard, and a file
that does not match its manifest line is neither loaded nor marked.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.distributed_map import upload_export
from harness.lane import scan_items
from harness.migration import diff, make_poller, prefill
from replicator import export_copy_handler
from replicator.cli import main
from replicator.migrate import export
from replicator.migrate.distributed import ExportFileTask, load_task, progress_collection, task_at
from replicator.migrate.export import (
    ExportFileMismatch,
    export_json,
    load_manifest,
    progress_id,
    write_export,
)
from replicator.migrate.sync import sync_export
from support.exports import replace_data_file

BUCKET = "exports"


class SimulatedKill(BaseException):
    """The child's process dies here (a BaseException: nothing in the loader catches it)."""


@pytest.fixture
def table(moto: Any) -> Any:
    """A table of 60 items (strings, numbers, a string set, a map with a list)."""
    created = moto.create_table(TableSpec("distributed", ("pk", "S")))
    prefill(moto.dynamodb(), "distributed", 60)
    return created


def _export(moto: Any, tmp_path: Path, files: int = 4) -> tuple[Path, str]:
    """The table's items as a full export in AWS's layout (``files`` data files, the last one
    empty, as DynamoDB writes one per partition), put in moto's S3; (local root, s3:// location)."""
    lines = [{"Item": export_json(i)} for i in scan_items(moto.dynamodb(), "distributed")]
    parts = [lines[n::files - 1] for n in range(files - 1)] + [[]]
    root = write_export(tmp_path, parts)
    s3 = moto.s3()
    s3.create_bucket(Bucket=BUCKET)
    return root, upload_export(s3, BUCKET, root)


def _event(location: str, root: Path, index: int) -> dict[str, Any]:
    """What the state machine's ItemSelector hands a child: the manifest line, the export."""
    line = (root / "manifest-files.json").read_text().splitlines()[index]
    return {"Item": json.loads(line), "Export": location, "Index": index}


@pytest.fixture
def collection(export_copy_lambda: Any) -> Iterator[Any]:
    yield export_copy_lambda


@pytest.mark.slow
def test_the_child_loads_its_data_file_from_s3_once_and_a_rerun_skips_it(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    root, location = _export(moto, tmp_path)
    first = export_copy_handler.load_file(_event(location, root, 0))
    assert first["AlreadyLoaded"] is False and first["Lines"] == 20 and first["Written"] == 20
    assert collection.count_documents({}) == 20
    again = export_copy_handler.load_file(_event(location, root, 0))
    assert again == {**again, "AlreadyLoaded": True, "Lines": 0, "Written": 0}
    # the progress document is the one `sync --export` keeps: whichever path loaded, the other skips
    manifest = load_manifest(location, moto.s3())
    progress = progress_collection(collection)
    assert progress.find_one({"_id": progress_id(manifest, manifest.files[0])})["done"] is True
    for index in (1, 2, 3):  # the empty data file (an empty partition) loads and is marked too
        export_copy_handler.load_file(_event(location, root, index))
    assert diff(moto, table, collection).converged
    assert progress.count_documents({"kind": "export-file", "done": True}) == 4


@pytest.mark.slow
def test_a_child_killed_mid_file_leaves_no_mark_and_its_rerun_loads_the_file_exactly_once(
    moto: Any, table: Any, tmp_path: Path, collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH", 7)  # a 20-line file in 3 batches
    root, location = _export(moto, tmp_path)
    replicator = export_copy_handler._get_replicator()
    process = replicator.process
    calls = [0]

    def dying(records: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:
            raise SimulatedKill
        return process(records, *args, **kwargs)

    monkeypatch.setattr(replicator, "process", dying)
    with pytest.raises(SimulatedKill):
        export_copy_handler.load_file(_event(location, root, 0))
    assert collection.count_documents({}) == 14  # two batches were acknowledged
    assert progress_collection(collection).count_documents({}) == 0  # and nothing marked
    # a mark no load writes, on a document the killed child wrote: the rerun's second write of
    # that line must be a no-op (equal sequence number "0": the first write wins)
    marked = collection.find_one({})["_id"]
    collection.update_one({"_id": marked}, {"$set": {"mark": 1}})
    rerun = export_copy_handler.load_file(_event(location, root, 0))
    # the lines already in count as written (the core tells its own earlier write apart from a
    # newer stream change: item_records.tally), none as "newer"
    assert (rerun["Lines"], rerun["Written"], rerun["NewerKept"]) == (20, 20, 0)
    assert collection.find_one({"_id": marked})["mark"] == 1
    assert collection.count_documents({}) == 20
    collection.update_one({"_id": marked}, {"$unset": {"mark": ""}})
    assert export_copy_handler.load_file(_event(location, root, 0))["AlreadyLoaded"] is True
    for index in (1, 2, 3):
        export_copy_handler.load_file(_event(location, root, index))
    assert diff(moto, table, collection).converged


@pytest.mark.slow
def test_a_data_file_that_differs_from_its_manifest_line_is_neither_loaded_nor_marked(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    root, location = _export(moto, tmp_path)
    original = (root / "data" / sorted(p.name for p in (root / "data").iterdir())[1]).read_bytes()
    lines = gzip.decompress(original).splitlines(keepends=True)
    key = replace_data_file(root, 1, gzip.compress(b"".join(lines[:-1])), 19, manifest=False)
    moto.s3().put_object(Bucket=BUCKET, Key=key, Body=(root / "data" / key.rsplit("/", 1)[-1]).read_bytes())
    with pytest.raises(ExportFileMismatch, match="MD5"):
        export_copy_handler.load_file(_event(location, root, 1))
    assert collection.count_documents({}) == 0
    assert progress_collection(collection).count_documents({}) == 0
    # the file copied again from the source: the same child loads it
    moto.s3().put_object(Bucket=BUCKET, Key=key, Body=original)
    assert export_copy_handler.load_file(_event(location, root, 1))["Written"] == 20


def test_bad_lines_are_quarantined_with_their_file_and_line_and_the_file_is_marked(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    root, location = _export(moto, tmp_path)
    good = gzip.decompress((root / "data" / sorted(p.name for p in (root / "data").iterdir())[0]
                            ).read_bytes()).splitlines(keepends=True)
    body = b"".join([good[0], b"{not json\n", b'{"Keys": {"pk": {"S": "x"}}}\n', *good[1:]])
    key = replace_data_file(root, 0, gzip.compress(body), len(good) + 2)
    s3 = moto.s3()
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body))
    s3.put_object(Bucket=BUCKET, Key=key.split("/data/")[0] + "/manifest-files.json",
                  Body=(root / "manifest-files.json").read_bytes())
    result = export_copy_handler.load_file(_event(location, root, 0))
    assert (result["Lines"], result["Written"], result["Quarantined"]) == (22, 20, 2)
    kept = list(collection.database[f"{collection.name}_quarantine"].find({}))
    assert sorted(json.dumps(d, default=str).count(key) > 0 for d in kept) == [True, True]
    text = json.dumps(kept, default=str)
    assert "line 2 of export data file" in text and "line 3 of export data file" in text
    assert progress_collection(collection).count_documents({"done": True}) == 1


def test_a_child_event_without_its_manifest_line_is_named_and_nothing_is_written(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    _root, location = _export(moto, tmp_path)
    with pytest.raises(Exception, match="'Item'"):
        export_copy_handler.load_file({"Export": location})
    with pytest.raises(Exception, match="dataFileS3Key"):
        export_copy_handler.load_file({"Item": {"itemCount": 3}, "Export": location})
    assert collection.count_documents({}) == 0


def test_an_incremental_export_is_refused_by_the_child(moto: Any, table: Any, tmp_path: Path,
                                                       collection: Any) -> None:
    task = ExportFileTask("s3://b/x", {"dataFileS3Key": "x/data/a.json.gz"}, "arn:e",
                          "INCREMENTAL_EXPORT")
    with pytest.raises(Exception, match="full export"):
        load_task(task, export_copy_handler._get_replicator())


# -- AWS Batch array children: replicator load-export-file ------------------------------------------
def _cli(location: str, uri: str, database: str, *extra: str) -> list[str]:
    return ["load-export-file", "--table", "distributed", "--mongodb-uri", uri, "--database",
            database, "--collection", "by_batch", "--export", location, *extra]


@pytest.mark.slow
def test_batch_array_children_load_the_export_as_sync_export_does(
    moto: Any, table: Any, tmp_path: Path, mongoeco_server_uri: str, mongoeco_db: Any,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    _root, location = _export(moto, tmp_path)
    for index in range(4):  # as Batch starts an array job of 4 children
        monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(index))
        assert main(_cli(location, mongoeco_server_uri, mongoeco_db.name)) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["Index"] for r in reports] == [0, 1, 2, 3]
    assert sum(r["Written"] for r in reports) == 60
    # the key schema came from DescribeTable (no --key-schema); a child run again skips its file
    assert main(_cli(location, mongoeco_server_uri, mongoeco_db.name, "--index", "2")) == 0
    assert json.loads(capsys.readouterr().out)["AlreadyLoaded"] is True
    single = mongoeco_db["by_sync"]
    sync_export(make_poller(moto, table, single), load_manifest(location, moto.s3()), s3=moto.s3())
    # the same documents: both are the table's, as the core's expected documents say (the guard
    # field differs by design: sync applied the stream's INSERTs of the same items afterwards)
    assert diff(moto, table, single).converged
    assert diff(moto, table, mongoeco_db["by_batch"]).converged


def test_load_export_file_without_an_index_or_past_the_last_line_is_a_usage_error(
    moto: Any, table: Any, tmp_path: Path, mongoeco_server_uri: str, mongoeco_db: Any,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    _root, location = _export(moto, tmp_path)
    assert main(_cli(location, mongoeco_server_uri, mongoeco_db.name, "--key-schema", "pk")) == 2
    assert "AWS_BATCH_JOB_ARRAY_INDEX" in capsys.readouterr().err
    assert main(_cli(location, mongoeco_server_uri, mongoeco_db.name, "--key-schema", "pk",
                     "--index", "4")) == 2
    assert "has 4 data file(s)" in capsys.readouterr().err
    assert mongoeco_db["by_batch"].count_documents({}) == 0
    with pytest.raises(Exception, match="index 9"):
        task_at(location, 9, moto.s3())


# -- inputs of the same kind, new ones (a reviewer's break-it pass) ---------------------------------
def test_manifest_lines_with_a_quoted_etag_or_a_multipart_etag_are_read_as_aws_writes_them() -> None:
    import base64
    import hashlib

    from replicator.migrate.export import data_file_of, mismatch

    data = gzip.compress(b'{"Item": {"pk": {"S": "a"}}}\n')
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    quoted = data_file_of("s3://b/p/AWSDynamoDB/x", {
        "itemCount": 1, "md5Checksum": base64.b64encode(digest).decode(),
        "etag": f'"{digest.hex()}"', "dataFileS3Key": "p/AWSDynamoDB/x/data/f.json.gz"})
    assert quoted.etag == digest.hex() and mismatch(quoted, data) is None
    assert quoted.location == "s3://b/p/AWSDynamoDB/x/data/f.json.gz"
    # a multipart upload's ETag is no MD5 of the object: not compared, the MD5 still is
    multipart = data_file_of("s3://b/p/AWSDynamoDB/x", {
        "itemCount": 1, "md5Checksum": base64.b64encode(digest).decode(),
        "etag": "0123abcd-3", "dataFileS3Key": "p/AWSDynamoDB/x/data/f.json.gz"})
    assert mismatch(multipart, data) is None
    assert "MD5" in str(mismatch(multipart, gzip.compress(b"{}\n")))


def test_a_data_file_missing_from_s3_is_named_and_nothing_is_marked(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    root, location = _export(moto, tmp_path)
    event = _event(location, root, 1)
    moto.s3().delete_object(Bucket=BUCKET, Key=event["Item"]["dataFileS3Key"])
    with pytest.raises(FileNotFoundError, match=r"data/00001-abcdef12\.json\.gz: no such object"):
        export_copy_handler.load_file(event)
    assert progress_collection(collection).count_documents({}) == 0
    with pytest.raises(Exception, match=r"no manifest-summary\.json"):
        export_copy_handler.load_file({**event, "Export": location + "-typo"})


@pytest.mark.slow
def test_an_event_without_the_export_s_context_reads_its_summary_and_a_trailing_slash_is_fine(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    root, location = _export(moto, tmp_path)
    event = {"Item": _event(location, root, 0)["Item"], "Export": location + "/"}
    assert export_copy_handler.load_file(event)["Written"] == 20
    # the same file, under the ARN the summary names: the full context finds it loaded
    manifest = load_manifest(location, moto.s3())
    full = {**_event(location, root, 0), "ExportArn": manifest.export_arn, "ExportType": "FULL_EXPORT"}
    assert export_copy_handler.load_file(full)["AlreadyLoaded"] is True


@pytest.mark.slow
def test_two_children_of_the_same_file_at_once_leave_the_collection_as_one_would(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    """Two executions started over the same export (or a child redriven while its first attempt
    still runs): both load the file, the guard keeps the first write of each line."""
    from concurrent.futures import ThreadPoolExecutor

    root, location = _export(moto, tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(export_copy_handler.load_file, [_event(location, root, 2)] * 2))
    assert sum(r["Lines"] for r in results if not r["AlreadyLoaded"]) in (20, 40)
    assert collection.count_documents({}) == 20
    assert progress_collection(collection).count_documents({"done": True}) == 1


@pytest.mark.slow
def test_prepare_records_the_positions_and_a_stopped_handover_is_called_again(
    moto: Any, table: Any, tmp_path: Path, collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replicator.migrate import distributed
    from replicator.poller.checkpoints import CheckpointStore

    _root, location = _export(moto, tmp_path)
    prepared = export_copy_handler.stream_step({"Step": "prepare", "Export": location,
                                                "Table": "distributed"})
    assert prepared["Bucket"] == BUCKET and prepared["DataFiles"] == 4
    assert prepared["ManifestFilesKey"].endswith("/manifest-files.json")
    store = CheckpointStore.beside(collection, table="distributed")
    assert store.marker(table.stream_arn) is not None  # the positions: the poller's, in MongoDB
    # a handover out of time answers CaughtUp false and marks nothing; called again, it is done
    original = distributed.handover

    def out_of_time(poller: Any, **kwargs: Any) -> Any:
        poller.stop()  # as the invocation's deadline does
        return original(poller, **kwargs)

    monkeypatch.setattr(distributed, "handover", out_of_time)
    late = export_copy_handler.stream_step({"Step": "handover", "Table": "distributed"})
    assert late["CaughtUp"] is False and late["ConsistentAt"] is None
    assert progress_collection(collection).find_one({"kind": "sync"}) is None
    monkeypatch.setattr(distributed, "handover", original)
    done = export_copy_handler.stream_step({"Step": "handover", "Table": "distributed"})
    assert done["CaughtUp"] is True and done["StreamRecordsApplied"] == 0
    assert progress_collection(collection).find_one({"kind": "sync"})["consistent_at"] is not None
    with pytest.raises(Exception, match="Step"):
        export_copy_handler.stream_step({"Step": "copy", "Table": "distributed"})


def test_a_connection_lost_on_the_progress_read_or_mark_is_retried(
    moto: Any, table: Any, tmp_path: Path, collection: Any
) -> None:
    """Found by the benchmark: eight children at once into a slow server, pymongo cancelled a
    pooled connection's waiters (``_OperationCancelled``) on the progress read and the child
    failed; the batches were already retried, the progress read and mark were not."""
    from pymongo.errors import AutoReconnect

    from replicator.migrate.distributed import ExportFileTask
    from replicator.retry import Backoff

    root, location = _export(moto, tmp_path)
    progress = progress_collection(collection)

    class Flaky:
        """The progress collection, losing its connection on the first call of each method."""

        def __init__(self) -> None:
            self.failed: set[str] = set()

        def __getattr__(self, name: str) -> Any:
            method = getattr(progress, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                if name not in self.failed:
                    self.failed.add(name)
                    raise AutoReconnect("connection reset")
                return method(*args, **kwargs)
            return call

    flaky = Flaky()
    waits: list[float] = []
    task = ExportFileTask.from_event(_event(location, root, 0))
    manifest = load_manifest(location, moto.s3())
    result = export.load_export_file(
        manifest, export.data_file_of(location, task.entry), export_copy_handler._get_replicator(),
        key_schema=("pk",), progress=flaky, s3=moto.s3(),
        backoff=Backoff(max_attempts=3, sleep=waits.append))
    assert result.written == 20 and flaky.failed == {"find_one", "update_one"}
    assert len(waits) == 2 and progress.count_documents({"done": True}) == 1
