"""Issue 22, part 1: the export copy's state machine (deploy/export-copy.yaml) run by the
emulation (harness/distributed_map.py) -- its definition read from the template, the Distributed
Map's items read from moto's S3, each child the Lambda handler the template names, concurrently
-- equals the single-machine ``sync --export``; a failed child fails the map, and a redrive loads
what is left, each file once.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.distributed_map import (
    EXCEEDED,
    StateMachine,
    UnsupportedDefinition,
    read_definition,
    upload_export,
)
from harness.esm.template import load_template
from harness.lane import scan_items
from harness.migration import LiveWriter, diff, make_poller, prefill
from replicator import export_copy_handler
from replicator.migrate import export
from replicator.migrate.distributed import progress_collection
from replicator.migrate.export import export_json, load_manifest, write_export
from replicator.migrate.sync import sync_export

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "export-copy.yaml"
BUCKET = "exports"
TABLE = "items"  # the functions' collection is "items" too (support.fixtures.export_copy_lambda)


class ChildDied(Exception):
    """A child's function error the state machine does not retry (as a MongoDB outage past the
    loader's retries ends a child)."""


class SandboxTimedOut(Exception):
    """Lambda's own failure of a child that ran out of time (``Sandbox.Timedout``): retried."""

    error_name = "Sandbox.Timedout"


def _exported_table(moto: Any, tmp_path: Path, files: int = 6) -> tuple[Any, str]:
    """A table of 90 items, a full export of it in AWS's layout in moto's S3 (``files`` data
    files, one empty), then changes made after the export (only the stream has them)."""
    table = moto.create_table(TableSpec(TABLE, ("pk", "S")))
    client = moto.dynamodb()
    prefill(client, TABLE, 90)
    lines = [{"Item": export_json(i)} for i in scan_items(client, TABLE)]
    root = write_export(tmp_path, [lines[n::files - 1] for n in range(files - 1)] + [[]])
    s3 = moto.s3()
    s3.create_bucket(Bucket=BUCKET)
    location = upload_export(s3, BUCKET, root)
    writer = LiveWriter(client, TABLE, 90, seed=22)
    for _ in range(5):
        writer.step()
    return table, location


def _machine(moto: Any, **parameters: str) -> StateMachine:
    return StateMachine.from_template(TEMPLATE, moto.s3(), parameters={
        "TableName": TABLE, "ExportBucket": BUCKET, "ExportPrefix": "exports",
        "MongoDbUriSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:uri",
        "KeySchema": "pk", **parameters})


def test_the_template_s_map_is_the_one_the_issue_asks_for(moto: Any) -> None:
    name, state = _machine(moto).map_state()
    assert name == "LoadDataFiles"
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert state["ItemReader"]["ReaderConfig"] == {"InputType": "JSONL"}
    assert state["ToleratedFailureCount"] == 0
    assert state["MaxConcurrencyPath"] == "$.MaxConcurrency"
    assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    (task,) = state["ItemProcessor"]["States"].values()
    assert task["Resource"] == "function:ExportFileFunction"
    transient = task["Retry"][0]["ErrorEquals"]
    assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= set(transient)
    assert "ExportFileMismatch" not in str(task["Retry"]) and "States.ALL" not in str(task["Retry"])
    # the child is the Lambda handler the template names, the same package as the replicator's
    template = load_template(TEMPLATE)
    function = template["Resources"]["ExportFileFunction"]
    assert function["Properties"]["Handler"] == "replicator.export_copy_handler.load_file"
    assert template["Globals"]["Function"]["CodeUri"] == "../"


def test_the_emulation_refuses_what_it_does_not_run() -> None:
    template = load_template(TEMPLATE)
    inline = copy.deepcopy(template)
    states = inline["Resources"]["ExportCopyStateMachine"]["Properties"]["Definition"]["States"]
    states["LoadDataFiles"]["ItemProcessor"]["ProcessorConfig"]["Mode"] = "INLINE"
    with pytest.raises(UnsupportedDefinition, match="INLINE"):
        StateMachine(read_definition(inline), {}, None)
    csv = copy.deepcopy(template)
    states = csv["Resources"]["ExportCopyStateMachine"]["Properties"]["Definition"]["States"]
    states["LoadDataFiles"]["ItemReader"]["ReaderConfig"]["InputType"] = "CSV"
    with pytest.raises(UnsupportedDefinition, match="JSONL"):
        StateMachine(read_definition(csv), {}, None)
    catch = copy.deepcopy(template)
    states = catch["Resources"]["ExportCopyStateMachine"]["Properties"]["Definition"]["States"]
    states["Prepare"]["Catch"] = []
    with pytest.raises(UnsupportedDefinition, match="Catch"):
        StateMachine(read_definition(catch), {}, None)


@pytest.mark.slow
def test_the_emulated_map_copies_the_export_as_sync_export_does(
    moto: Any, tmp_path: Path, export_copy_lambda: Any, mongoeco_db: Any
) -> None:
    table, location = _exported_table(moto, tmp_path)
    machine = _machine(moto, MaxConcurrency="3")
    execution = machine.start({"Export": location})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.states[:4] == ["Prepare", "Settings", "LoadDataFiles", "Handover"]
    run = execution.map_runs["LoadDataFiles"]
    assert [c.status for c in run.children] == ["SUCCEEDED"] * 6
    assert run.started == 6 and 1 <= run.peak_concurrency <= 3
    assert sum(c.task_result["Lines"] for c in run.children) == 90
    # each child's input is the manifest line with the export's context (the ItemSelector)
    manifest = load_manifest(location, moto.s3())
    assert [c.input["Item"]["dataFileS3Key"] for c in run.children] == [f.key for f in manifest.files]
    assert {c.input["ExportArn"] for c in run.children} == {manifest.export_arn}
    assert execution.output["Handover"]["CaughtUp"] is True
    assert [c.output for c in run.children] == [{}] * 6  # OutputPath null: a small map result

    single = mongoeco_db["single"]
    sync_export(make_poller(moto, table, single), manifest, s3=moto.s3())
    distributed = export_copy_lambda
    assert diff(moto, table, distributed).converged  # the table now, stream changes included
    assert diff(moto, table, single).converged

    def documents(collection: Any) -> dict[Any, Any]:
        return {d["_id"]: d for d in collection.find({})}

    # the same documents, the guard's sequence numbers included: both applied the same stream
    assert documents(distributed) == documents(single)
    marker = progress_collection(distributed).find_one({"kind": "sync"})
    assert marker is not None and marker["consistent_at"] is not None


@pytest.mark.slow
def test_a_failed_child_fails_the_map_and_a_redrive_loads_each_remaining_file_once(
    moto: Any, tmp_path: Path, export_copy_lambda: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH", 6)  # 18 lines a file: 3 batches
    table, location = _exported_table(moto, tmp_path)
    manifest = load_manifest(location, moto.s3())
    timed_out, dead = manifest.files[0].key, manifest.files[2].key
    replicator = export_copy_handler._get_replicator()
    process = replicator.process
    batches: dict[str, int] = {}

    def failing(records: Any, *args: Any, **kwargs: Any) -> Any:
        key = str(records[0]["eventID"]).split("export-", 1)[-1].rsplit("-", 1)[0]
        batches[key] = batches.get(key, 0) + 1
        if key == timed_out and batches[key] == 2:
            raise SandboxTimedOut("the child ran out of time mid-file")
        if key == dead and batches[key] == 2:
            raise ChildDied("MongoDB unreachable past the retries")
        return process(records, *args, **kwargs)

    monkeypatch.setattr(replicator, "process", failing)
    machine = _machine(moto, MaxConcurrency="1")  # one child at a time: the abort is exact
    execution = machine.start({"Export": location})
    assert execution.status == "FAILED" and execution.error == EXCEEDED
    assert "ChildDied" in str(execution.cause)
    assert "Handover" not in execution.states  # no handover for a copy not done
    run = execution.map_runs["LoadDataFiles"]
    # the timed-out child was retried by the Retry policy and loaded its file
    assert [c.status for c in run.children] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "ABORTED",
                                                "ABORTED", "ABORTED"]
    assert run.children[0].attempts == 2
    progress = progress_collection(export_copy_lambda)
    assert progress.count_documents({"kind": "export-file"}) == 2  # the dead file: no mark

    execution = machine.redrive(execution)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert run.started == 3 + 4  # the redrive started the 4 children that had not succeeded
    assert [c.task_result["AlreadyLoaded"] for c in run.children] == [False] * 6
    assert execution.states[-3:] == ["Handover", "CaughtUp", "Consistent"]
    assert progress.count_documents({"kind": "export-file", "done": True}) == 6
    assert diff(moto, table, export_copy_lambda).converged

    # a second execution over the same export (a user starting it again) loads nothing again
    again = machine.start({"Export": location})
    assert again.status == "SUCCEEDED"
    assert [c.task_result["AlreadyLoaded"] for c in again.map_runs["LoadDataFiles"].children] == [True] * 6


@pytest.mark.slow
def test_a_child_over_an_export_the_stream_does_not_cover_never_starts(
    moto: Any, tmp_path: Path, export_copy_lambda: Any
) -> None:
    """Prepare refuses an export older than the stream's 23 hours: the map never runs."""
    from datetime import datetime, timedelta, timezone

    moto.create_table(TableSpec(TABLE, ("pk", "S")))
    root = write_export(tmp_path, [[{"Item": {"pk": {"S": "a"}}}]],
                        export_time=datetime.now(timezone.utc) - timedelta(hours=30))
    s3 = moto.s3()
    s3.create_bucket(Bucket=BUCKET)
    execution = _machine(moto).start({"Export": upload_export(s3, BUCKET, root)})
    assert execution.status == "FAILED" and execution.failed_state == "Prepare"
    assert execution.error == "ResyncRequired" and "exportTime" in str(execution.cause)
    assert "LoadDataFiles" not in execution.map_runs
    assert export_copy_lambda.count_documents({}) == 0
