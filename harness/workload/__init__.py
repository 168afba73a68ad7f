"""Seeded, reproducible DynamoDB workloads written through a low-level boto3 ``dynamodb`` client.

A workload is plain data (:class:`WorkloadSpec`, filled from a scenario's ``[workload]`` table).
:func:`plan_operations` turns it into a list of :class:`Operation` without any I/O: the same
spec and seed give the same operations, in the same order, with the same requests. The planner
keeps a model of the table (assumed empty at the start) so that every operation does what its name
says (a ``put_overwrite`` replaces an existing item, an ``update_remove`` removes attributes that
exist, a ``conditional_fail`` fails) and so that every write changes the item (DynamoDB emits no
stream record for a write that changes nothing). :func:`expected_state` is that model at the end.

:func:`run_workload` sends the operations. With ``writers > 1`` each key belongs to one writer
thread (by a hash of the key), so the writes to any one key happen in plan order and the final
table is the same as with one writer. Multi-key operations (BatchWriteItem, TransactWriteItems)
only group keys of one writer (so their grouping depends on ``writers``), and a transaction runs
while no other operation does (moto restores a whole-table snapshot when one is cancelled).

Values are wire format (``{"S": ..}``, ``{"N": "19.99"}``, ``{"B": b".."}``, ...). The planner
checks every item it would produce against DynamoDB's rules (:func:`check_item`: size, nesting,
number range and precision, non-empty sets without duplicates; :mod:`harness.dynamodb_values`) and
stays under :data:`MAX_ITEM_BYTES` by AWS's item size formula (:func:`item_size`).

Modules: ``spec`` (settings, operations, results), ``generators`` (values), ``keys`` (key space and
distributions), ``updates`` (UpdateItem actions and expressions), ``items`` (single-item
operations), ``planner`` (the mix, batches and transactions), ``writer`` (sending, retries, rate).
"""

from harness.dynamodb_values import (
    ITEM_SIZE_LIMIT,
    MAX_NESTING,
    attribute_size,
    check_number,
    item_size,
    nesting_depth,
)
from harness.workload.generators import EDGE_NUMBERS
from harness.workload.planner import expected_state, iter_operations, plan_operations
from harness.workload.spec import (
    DISTRIBUTIONS,
    MAX_ITEM_BYTES,
    OPERATIONS,
    TRANSACTION_BYTES,
    VALUE_PROFILES,
    Operation,
    WorkloadResult,
    WorkloadSpec,
    check_item,
    key_tuple,
)
from harness.workload.writer import run_workload

__all__ = [
    "DISTRIBUTIONS",
    "EDGE_NUMBERS",
    "ITEM_SIZE_LIMIT",
    "MAX_ITEM_BYTES",
    "MAX_NESTING",
    "OPERATIONS",
    "TRANSACTION_BYTES",
    "VALUE_PROFILES",
    "Operation",
    "WorkloadResult",
    "WorkloadSpec",
    "attribute_size",
    "check_item",
    "check_number",
    "expected_state",
    "item_size",
    "iter_operations",
    "key_tuple",
    "nesting_depth",
    "plan_operations",
    "run_workload",
]
