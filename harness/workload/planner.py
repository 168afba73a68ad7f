"""The plan: the operation mix drawn in seed order, multi-item operations (BatchWriteItem,
TransactWriteItems, and the conditional writes meant to fail), and the public planning functions.
Pure: no I/O, the same spec and seed give the same operations."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from harness.backends.base import TableSpec
from harness.dynamodb_values import clone, item_size
from harness.workload.items import ItemPlanner, Plan
from harness.workload.spec import (
    BATCH_MAX,
    OPERATIONS,
    TRANSACTION_BYTES,
    TRANSACTION_MAX,
    Item,
    KeyTuple,
    Operation,
    WorkloadSpec,
)
from harness.workload.updates import UpdateExpression


class WorkloadPlanner(ItemPlanner):
    """Draws each operation's kind from the mix and plans it, falling back to the closest
    possible kind; iterating yields the operations and updates the model of the table."""

    def __init__(self, spec: TableSpec, workload: WorkloadSpec) -> None:
        super().__init__(spec, workload)
        self.mix_names = [n for n in OPERATIONS if workload.mix.get(n, 0) > 0]
        self.mix_cum: list[float] = []
        running = 0.0
        for name in self.mix_names:
            running += float(workload.mix[name])
            self.mix_cum.append(running)

    def plan_conditional_fail(self) -> Plan:
        variants = ["update_if_exists"] if len(self.state) < self.w.keys else []
        if self.state:
            variants += ["put_if_absent", "delete_if_rev", "update_if_rev", "transaction"]
        variant = self.rng.choice(variants)
        if variant == "transaction":
            cancelled = self.plan_transaction(cancelled=True)
            if len(cancelled.keys) >= 2:
                return cancelled
            variant = "put_if_absent"  # a transaction needs a second key of the same writer
        pk = self.spec.partition_key[0]
        expression = UpdateExpression()
        if variant == "update_if_exists":
            i = self.pick(self.missing)
            assert i is not None
            request = {
                "TableName": self.table,
                "Key": clone(self.key(i)),
                "UpdateExpression": expression.update(
                    [("SET", (self.rev,), {"N": str(self.index)})]
                ),
                "ConditionExpression": f"attribute_exists({expression.name(pk)})",
            }
            method = "update_item"
        elif variant == "put_if_absent":
            i = self.pick(self.exists, existing=True)
            assert i is not None
            request = {
                "TableName": self.table,
                "Item": self.new_item(i, self.state[i]),
                "ConditionExpression": f"attribute_not_exists({expression.name(pk)})",
            }
            method = "put_item"
        else:  # delete_if_rev, update_if_rev
            i = self.pick(self.exists, existing=True)
            assert i is not None
            request = {"TableName": self.table, "Key": clone(self.key(i))}
            if variant == "update_if_rev":
                request["UpdateExpression"] = expression.update([("REMOVE", (self.rev,), None)])
                method = "update_item"
            else:
                method = "delete_item"
            # rev is never negative: the comparison is false (and false without the attribute)
            request["ConditionExpression"] = (
                f"{expression.name(self.rev)} = {expression.value({'N': '-1'})}"
            )
        plan = Plan("conditional_fail", method, expression.attach(request), [i], {},
                     expect_failure=True)
        return plan

    # multi-item operations
    def group(self, wanted: int, first_accept: Callable[[int], bool] | None = None) -> list[int]:
        first = self.pick(first_accept) if first_accept else self.draw()
        if first is None:
            return []
        shard = self.shard(first)
        chosen = [first]
        for _ in range(wanted * 4):
            if len(chosen) >= wanted:
                break
            j = self.draw()
            if j not in chosen and self.shard(j) == shard:
                chosen.append(j)
        return chosen

    def plan_batch_write(self) -> Plan:
        keys = self.group(self.rng.randint(2, BATCH_MAX))
        requests: list[dict[str, Any]] = []
        after: dict[int, Item | None] = {}
        for i in keys:
            if self.exists(i) and self.rng.random() < 0.35:
                requests.append({"DeleteRequest": {"Key": clone(self.key(i))}})
                after[i] = None
            else:
                item = self.new_item(i, self.state.get(i))
                requests.append({"PutRequest": {"Item": item}})
                after[i] = item
        request = {"RequestItems": {self.table: requests}}
        return Plan("batch_write", "batch_write_item", request, keys, after)

    def plan_transaction(self, cancelled: bool = False) -> Plan:
        rng = self.rng
        keys = self.group(rng.randint(2, TRANSACTION_MAX), self.exists if cancelled else None)
        pk = self.spec.partition_key[0]
        items: list[dict[str, Any]] = []
        after: dict[int, Item | None] = {}
        budget = 0
        for position, i in enumerate(keys):
            before = self.state.get(i)
            before_size = item_size(before) if before else 0
            if position and budget + max(self.target, before_size) + 2048 > TRANSACTION_BYTES:
                keys = keys[:position]  # TransactWriteItems' aggregate size limit
                break
            roll = rng.random()
            expression = UpdateExpression()
            if cancelled and position == 0:
                check = f"attribute_not_exists({expression.name(pk)})"
                items.append({"ConditionCheck": expression.attach(
                    {"TableName": self.table, "Key": clone(self.key(i)), "ConditionExpression": check}
                )})
            elif before is not None and roll < 0.15 and not cancelled:
                check = f"attribute_exists({expression.name(pk)})"
                items.append({"ConditionCheck": expression.attach(
                    {"TableName": self.table, "Key": clone(self.key(i)), "ConditionExpression": check}
                )})
            elif before is not None and roll < 0.35:
                items.append({"Delete": {"TableName": self.table, "Key": clone(self.key(i))}})
                after[i] = None
                budget += before_size
            elif roll < 0.7:
                item = self.new_item(i, before)
                items.append({"Put": {"TableName": self.table, "Item": item}})
                after[i] = item
                budget += max(before_size, item_size(item))
            else:
                actions, new = self.fit(before or clone(self.key(i)), self.set_actions(i))
                items.append({"Update": self.update_request(i, actions)})
                after[i] = new
                budget += max(before_size, item_size(new))
        if not after and not cancelled:
            # all condition checks: make the last one a write
            i = keys[-1]
            item = self.new_item(i, self.state.get(i))
            items[-1] = {"Put": {"TableName": self.table, "Item": item}}
            after[i] = item
        request = {"TransactItems": items}
        if cancelled:
            return Plan(
                "conditional_fail", "transact_write_items", request, keys, {}, expect_failure=True
            )
        # idempotent: run_workload sends a ClientRequestToken, the same for every retry
        return Plan("transaction", "transact_write_items", request, keys, after)

    # the loop
    def choose(self) -> str:
        at = bisect.bisect_right(self.mix_cum, self.rng.random() * self.mix_cum[-1])
        return self.mix_names[min(at, len(self.mix_names) - 1)]

    def plan_one(self, kind: str) -> Plan:
        tried: list[str] = []
        while True:
            plan: Plan | None = getattr(self, f"plan_{kind}")()
            if plan is not None:
                return plan
            tried.append(kind)
            kind = _FALLBACK.get(kind, "update_set")
            if kind in tried:
                kind = "update_set"

    def __iter__(self) -> Iterator[Operation]:
        for index in range(self.w.operations):
            self.index = index
            plan = self.plan_one(self.choose())
            writes: list[KeyTuple] = []
            for i, new in plan.after.items():
                if new != self.state.get(i):
                    writes.append(self.ktuple(i))
                if new is None:
                    self.state.pop(i, None)
                else:
                    self.state[i] = new
            yield Operation(
                index=index,
                op=plan.op,
                method=plan.method,
                request=plan.request,
                keys=tuple(self.ktuple(i) for i in plan.keys),
                writes=tuple(writes),
                writer=self.shard(plan.keys[0]) if plan.keys else 0,
                expect_condition_failure=plan.expect_failure,
                idempotent=plan.idempotent,
            )

    def final_state(self) -> dict[KeyTuple, Item]:
        return {self.ktuple(i): item for i, item in sorted(self.state.items())}


# when a kind is impossible (no key fits), the closest possible one
_FALLBACK = {
    "put_new": "put_overwrite",
    "put_overwrite": "put_new",
    "update_remove": "update_set",
    "update_delete_set": "update_add_set",
    "update_add_set": "update_set",
    "update_add_number": "update_set",
    "delete": "put_new",
}


def iter_operations(spec: TableSpec, workload: WorkloadSpec) -> Iterator[Operation]:
    """The planned operations one by one (what :func:`plan_operations` lists)."""
    return iter(WorkloadPlanner(spec, workload))


def plan_operations(spec: TableSpec, workload: WorkloadSpec) -> list[Operation]:
    """Every operation of the workload, in order. Pure: no I/O, same seed -> same list."""
    return list(iter_operations(spec, workload))


def expected_state(spec: TableSpec, workload: WorkloadSpec) -> dict[KeyTuple, Item]:
    """The table after the workload, starting from an empty table: key tuple -> item."""
    planner = WorkloadPlanner(spec, workload)
    for _ in planner:
        pass
    return planner.final_state()
