"""Planning single-item operations (PutItem, UpdateItem, DeleteItem) against the planner's model of
the table: every write changes its item and stays within DynamoDB's rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.backends.base import TableSpec
from harness.dynamodb_values import AttributeValue, clone, element_key, item_size
from harness.workload.generators import (
    CHILD_NAMES,
    SET_ATTRIBUTES,
    SIMPLE,
    ZOO,
    ns_element,
    random_bytes,
    small_value,
    ss_element,
)
from harness.workload.keys import KeySpace
from harness.workload.spec import MAX_ITEM_BYTES, Action, Item, Path, WorkloadSpec, check_item
from harness.workload.updates import UpdateExpression, apply_actions


@dataclass
class Plan:
    """One planned call before it becomes an :class:`~harness.workload.spec.Operation`: key
    indexes, and ``after``: each written key's item afterwards (None: deleted)."""

    op: str
    method: str
    request: dict[str, Any]
    keys: list[int]
    after: dict[int, Item | None]
    expect_failure: bool = False
    idempotent: bool = True


class ItemPlanner(KeySpace):
    """Values, padding and the single-item operation kinds; ``plan_<kind>`` returns None when no
    key allows the kind (the caller falls back to another)."""

    def __init__(self, spec: TableSpec, workload: WorkloadSpec) -> None:
        super().__init__(spec, workload)
        taken = set(spec.key_schema)
        self.rev = _fresh("rev", taken)
        taken.add(self.rev)
        self.pad = _fresh("pad", taken)
        taken.add(self.pad)
        source = ZOO if self.zoo else SIMPLE
        self.catalog = {n: entry for n, entry in source.items() if n not in taken}
        self.names = list(self.catalog)
        self.counters = [n for n, (kind, _) in self.catalog.items() if kind == "counter"]
        self.sets = [n for n, (kind, _) in self.catalog.items() if kind == "set"]
        self.children = CHILD_NAMES[workload.value_profile]
        self.protected = set(spec.key_schema) | {self.pad}
        self.target = min(workload.item_size_bytes, MAX_ITEM_BYTES)

    # values
    def new_item(self, i: int, replacing: Item | None = None) -> Item:
        rng = self.rng
        item: Item = clone(self.key(i))
        item[self.rev] = {"N": str(self.index)}
        present = [n for n in (replacing or {}) if n not in self.protected]
        if replacing is not None and len(present) >= 2 and rng.random() < 0.8:
            chosen = rng.sample(self.names, min(len(self.names), rng.randint(0, len(present) - 2)))
        else:
            share = 0.8 if self.zoo else 0.7
            chosen = [n for n in self.names if rng.random() < share]
        for name in chosen:
            item[name] = self.catalog[name][1](rng)
        if self.target:
            room = self.target - item_size(item) - len(self.pad.encode())
            if room > 0:
                item[self.pad] = {"S": self.pad_text(room)}
        check_item(item)
        return item

    def pad_text(self, length: int) -> str:
        stamp = f"{self.index:x}.{self.rng.getrandbits(48):012x}|"
        return (stamp * (length // len(stamp) + 1))[:length]

    def fit(self, before: Item, actions: list[Action]) -> tuple[list[Action], Item]:
        """Apply, and if the item grows past the cap shrink its padding in the same update."""
        after = apply_actions(before, actions)
        excess = item_size(after) - MAX_ITEM_BYTES
        if excess > 0 and self.pad in after:
            keep = len(after[self.pad]["S"]) - excess - 64
            if keep >= 0:
                actions = [*actions, ("SET", (self.pad,), {"S": self.pad_text(keep)})]
                after = apply_actions(before, actions)
        check_item(after)
        return actions, after

    # document paths
    def map_paths(self, item: Item) -> list[Path]:
        """Paths of maps (depth <= 3) a SET can add a child to."""
        out: list[Path] = []

        def walk(path: Path, value: AttributeValue) -> None:
            ((tag, data),) = value.items()
            if len(path) > 3:
                return
            if tag == "M":
                out.append(path)
                for k, v in data.items():
                    walk((*path, k), v)
            elif tag == "L":
                for n, v in enumerate(data):
                    walk((*path, n), v)

        for name, value in item.items():
            if name not in self.protected:
                walk((name,), value)
        return out

    def removable(self, item: Item) -> dict[str, list[Path]]:
        """Top-level name -> paths under it (itself first, then nested, depth <= 4)."""
        out: dict[str, list[Path]] = {}

        def walk(path: Path, value: AttributeValue) -> None:
            out[path[0]].append(path)
            ((tag, data),) = value.items()
            if len(path) >= 4:
                return
            if tag == "M":
                for k, v in data.items():
                    walk((*path, k), v)
            elif tag == "L":
                for n, v in enumerate(data):
                    walk((*path, n), v)

        for name, value in item.items():
            if name not in self.protected:
                out[name] = []
                walk((name,), value)
        return out

    # single-item operations
    def update_request(self, i: int, actions: list[Action]) -> dict[str, Any]:
        expression = UpdateExpression()
        request = {
            "TableName": self.table,
            "Key": clone(self.key(i)),
            "UpdateExpression": expression.update(actions),
        }
        return expression.attach(request)

    def single(self, op: str, method: str, i: int, request: dict[str, Any], after: Item | None,
               idempotent: bool = True) -> Plan:
        return Plan(op, method, request, [i], {i: after}, idempotent=idempotent)

    def put(self, op: str, i: int) -> Plan:
        item = self.new_item(i, self.state.get(i))
        return self.single(op, "put_item", i, {"TableName": self.table, "Item": item}, item)

    def set_actions(self, i: int) -> list[Action]:
        rng = self.rng
        item = self.state.get(i)
        actions: list[Action] = [("SET", (self.rev,), {"N": str(self.index)})]
        used = {self.rev}
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if item and roll < 0.35:
                maps = [p for p in self.map_paths(item) if p[0] not in used]
                if maps:
                    path = rng.choice(maps)
                    child = rng.choice(self.children)
                    actions.append(("SET", (*path, child), small_value(rng, self.zoo)))
                    used.add(path[0])
                    continue
            if item and roll < 0.5:
                lists = [n for n, v in item.items() if "L" in v and n not in used | self.protected]
                if lists:
                    name = rng.choice(lists)
                    used.add(name)
                    if item[name]["L"] and rng.random() < 0.5:
                        index = rng.randrange(len(item[name]["L"]))
                        actions.append(("SET", (name, index), small_value(rng, self.zoo)))
                    else:
                        extra = [small_value(rng, self.zoo) for _ in range(rng.randint(1, 2))]
                        actions.append(("APPEND", (name,), {"L": extra}))
                    continue
            free = [n for n in self.names if n not in used]
            if free:
                name = rng.choice(free)
                used.add(name)
                actions.append(("SET", (name,), self.catalog[name][1](rng)))
        return actions

    def update(self, op: str, i: int, actions: list[Action]) -> Plan:
        actions, after = self.fit(self.state.get(i) or clone(self.key(i)), actions)
        idempotent = not any(kind in ("APPEND",) or (kind == "ADD" and "N" in value)
                             for kind, _, value in actions)
        return self.single(op, "update_item", i, self.update_request(i, actions), after, idempotent)

    def plan_put_new(self) -> Plan | None:
        if len(self.state) >= self.w.keys:
            return None
        i = self.pick(self.missing)
        return None if i is None else self.put("put_new", i)

    def plan_put_overwrite(self) -> Plan | None:
        if not self.state:
            return None
        i = self.pick(self.exists, existing=True)
        return None if i is None else self.put("put_overwrite", i)

    def plan_update_set(self) -> Plan:
        i = self.draw()
        return self.update("update_set", i, self.set_actions(i))

    def plan_update_remove(self) -> Plan | None:
        if not self.state:
            return None
        i = self.pick(
            lambda j: self.exists(j) and bool(self.removable(self.state[j])), existing=True
        )
        if i is None:
            return None
        groups = self.removable(self.state[i])
        names = self.rng.sample(list(groups), min(len(groups), self.rng.randint(1, 3)))
        actions: list[Action] = []
        for name in names:
            paths = groups[name]
            nested = paths[1:]
            path = self.rng.choice(nested) if nested and self.rng.random() < 0.6 else paths[0]
            actions.append(("REMOVE", path, None))
        return self.update("update_remove", i, actions)

    def plan_update_add_number(self) -> Plan | None:
        if not self.counters:
            return None
        i = self.draw()
        name = self.rng.choice(self.counters)
        if self.rng.random() < 0.2:
            delta = self.rng.choice(("0.5", "-1.25", "19.99", "0.01"))
        else:
            delta = str(self.rng.choice([d for d in range(-50, 51) if d]))
        return self.update("update_add_number", i, [("ADD", (name,), {"N": delta})])

    def new_elements(self, tag: str, existing: list[Any]) -> list[Any]:
        rng = self.rng
        makers: dict[str, Callable[[], Any]] = {
            "SS": lambda: ss_element(rng, self.zoo),
            "NS": lambda: ns_element(rng),
            "BS": lambda: random_bytes(rng, 1, 8),
        }
        marks = [element_key(tag, e) for e in existing]
        out: list[Any] = []
        for _ in range(40):
            element = makers[tag]()
            mark = element_key(tag, element)
            if mark not in marks:
                out.append(element)
                marks.append(mark)
            if len(out) >= 3 or (out and rng.random() < 0.5):
                break
        return out

    def plan_update_add_set(self) -> Plan | None:
        if not self.sets:
            return None
        i = self.draw()
        name = self.rng.choice(self.sets)
        item = self.state.get(i, {})
        tag = SET_ATTRIBUTES[name]
        existing = item[name][tag] if name in item else []
        elements = self.new_elements(tag, existing)
        if not elements:
            return None
        return self.update("update_add_set", i, [("ADD", (name,), {tag: elements})])

    def plan_update_delete_set(self) -> Plan | None:
        if not self.state or not self.sets:
            return None
        i = self.pick(
            lambda j: self.exists(j) and any(n in self.state[j] for n in self.sets), existing=True
        )
        if i is None:
            return None
        item = self.state[i]
        name = self.rng.choice([n for n in self.sets if n in item])
        ((tag, elements),) = item[name].items()
        if len(elements) == 1 or self.rng.random() < 0.2:
            chosen = list(elements)  # the set empties: DynamoDB removes the attribute
        else:
            chosen = self.rng.sample(list(elements), self.rng.randint(1, len(elements) - 1))
        return self.update("update_delete_set", i, [("DELETE", (name,), {tag: chosen})])

    def plan_delete(self) -> Plan | None:
        if not self.state:
            return None
        i = self.pick(self.exists, existing=True)
        if i is None:
            return None
        request = {"TableName": self.table, "Key": clone(self.key(i))}
        return self.single("delete", "delete_item", i, request, None)



def _fresh(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = f"_{name}"
    return name
