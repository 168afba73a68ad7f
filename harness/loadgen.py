"""A recorded stream for load replay, made without a source emulator.

``nox -s load`` replays a 50,000-event stream through the event source mapping emulation
(issue 14, part 4: "load-scenario replay in CI"). Recording that stream from moto costs minutes
of emulator time per run (4-5 ms a PutItem), so it is *generated*: the scenario's workload plan
(:func:`harness.workload.iter_operations`, deterministic for a seed) is applied to the reference
table :class:`harness.model.ModelTable`, which emits the stream records DynamoDB would (INSERT /
MODIFY with both images / REMOVE, nothing for a no-op write, strictly increasing sequence numbers).
The result is an ordinary recording (``harness replay`` reads it) of one shard.

Only whole-item writes are modelled -- PutItem, DeleteItem, BatchWriteItem (a load scenario's
mix must keep to ``put_new``, ``put_overwrite``, ``delete``, ``batch_write``): an update
expression would need an expression evaluator here.

Run as ``harness generate SCENARIO DIRECTORY [--set workload.operations=N]`` (``nox -s load``
runs it in a child process, so that the generator's memory does not count in the replay's RSS).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from harness.backends.base import TableSpec
from harness.captures.recording import Recording
from harness.model import ModelTable
from harness.workload import Operation, WorkloadSpec, iter_operations

__all__ = ["SUPPORTED_OPERATIONS", "generate", "model_records"]

#: the workload operations whose stream records are generated
SUPPORTED_OPERATIONS = frozenset({"put_new", "put_overwrite", "delete", "batch_write"})


def model_records(table: ModelTable, operations: Iterator[Operation]) -> Iterator[dict[str, Any]]:
    """Apply each planned operation to the model table; yield the stream records, in order."""
    for operation in operations:
        request = operation.request
        if operation.method == "put_item":
            emitted = [table.put(request["Item"])]
        elif operation.method == "delete_item":
            emitted = [table.delete(request["Key"])]
        elif operation.method == "batch_write_item":
            emitted = [_batch_entry(table, entry)
                       for entries in request["RequestItems"].values() for entry in entries]
        else:
            raise ValueError(
                f"operation {operation.index} is {operation.op} ({operation.method}): load "
                f"generation models only {', '.join(sorted(SUPPORTED_OPERATIONS))}"
            )
        for record in emitted:
            if record is not None:
                yield record


def _batch_entry(table: ModelTable, entry: Mapping[str, Any]) -> dict[str, Any] | None:
    if "PutRequest" in entry:
        return table.put(entry["PutRequest"]["Item"])
    return table.delete(entry["DeleteRequest"]["Key"])


def generate(spec: TableSpec, workload: WorkloadSpec) -> Recording:
    """The recording of ``workload`` on a table of ``spec`` (final items included)."""
    unsupported = {name for name, weight in workload.mix.items() if weight > 0} - \
        SUPPORTED_OPERATIONS
    if unsupported:
        raise ValueError(
            f"workload.mix: {', '.join(sorted(unsupported))} cannot be generated; load generation "
            f"models only {', '.join(sorted(SUPPORTED_OPERATIONS))}"
        )
    table = ModelTable(spec.key_schema, view_type=spec.stream_view_type, table_name=spec.name)
    records = list(model_records(table, iter_operations(spec, workload)))
    shard = "shardId-00000000000000000001-load0000"
    return Recording(spec, records, table.items(), {
        "source": "harness.loadgen (ModelTable)", "table": spec.name,
        "stream_arn": table.stream_arn, "records": len(records), "anonymized": False,
        "shards": [{"shard_id": shard, "parent_shard_id": None, "records": len(records)}],
        "workload": workload.to_dict(),
    })
