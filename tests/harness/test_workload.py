"""harness.workload: seeded plans (pure) and their execution against moto in-process.

The table's final state is checked against a model written here, independently of the planner: it
interprets the requests themselves (PutItem, UpdateItem expressions, DeleteItem, conditions,
BatchWriteItem, TransactWriteItems).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.workload import (
    EDGE_NUMBERS,
    MAX_ITEM_BYTES,
    OPERATIONS,
    TRANSACTION_BYTES,
    Operation,
    WorkloadSpec,
    check_item,
    check_number,
    expected_state,
    item_size,
    key_tuple,
    nesting_depth,
    plan_operations,
    run_workload,
)

ROOT = Path(__file__).resolve().parents[2]
ALL_OPS = {name: 1 for name in OPERATIONS}


# -- an independent model of what the requests do ----------------------------------------------
def norm(value: dict[str, Any]) -> Any:
    ((tag, data),) = value.items()
    if tag == "N":
        return ("N", Decimal(data))
    if tag in ("SS", "BS"):
        return (tag, frozenset(data))
    if tag == "NS":
        return (tag, frozenset(Decimal(n) for n in data))
    if tag == "M":
        return ("M", {k: norm(v) for k, v in data.items()})
    if tag == "L":
        return ("L", [norm(v) for v in data])
    return (tag, bytes(data) if tag == "B" else data)


def norm_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: norm(value) for name, value in item.items()}


def norm_table(items: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {key: norm_item(item) for key, item in items.items()}


def split_top(text: str) -> list[str]:
    out, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    return [*out, current.strip()] if current.strip() else out


def parse_path(text: str, names: dict[str, str]) -> list[Any]:
    tokens = re.findall(r"#\w+|\[\d+\]", text)
    return [names[t] if t.startswith("#") else int(t[1:-1]) for t in tokens]


def get_path(item: dict[str, Any], path: list[Any]) -> Any:
    value: Any = {"M": item}
    for segment in path:
        ((_, data),) = value.items()
        value = data[segment]
    return value


def parent_of(item: dict[str, Any], path: list[Any]) -> Any:
    return item if len(path) == 1 else next(iter(get_path(item, path[:-1]).values()))


def element(tag: str, e: Any) -> Any:
    return Decimal(e) if tag == "NS" else e


class Model:
    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.items: dict[Any, dict[str, Any]] = {}
        self.failed = 0

    def key(self, attrs: dict[str, Any]) -> tuple[Any, ...]:
        pairs = [self.spec.partition_key] + ([self.spec.sort_key] if self.spec.sort_key else [])
        return tuple(attrs[name][kind] for name, kind in pairs)

    def holds(self, body: dict[str, Any], key: Any) -> bool:
        expression = body.get("ConditionExpression")
        if not expression:
            return True
        names = body.get("ExpressionAttributeNames", {})
        values = body.get("ExpressionAttributeValues", {})
        item = self.items.get(key)
        match = re.fullmatch(r"attribute_(not_)?exists\((#\w+)\)", expression)
        if match:
            present = item is not None and names[match.group(2)] in item
            return present != bool(match.group(1))
        match = re.fullmatch(r"(#\w+) = (:\w+)", expression)
        if match:
            name = names[match.group(1)]
            return item is not None and name in item and norm(item[name]) == norm(
                values[match.group(2)]
            )
        raise AssertionError(f"the test model does not know the condition {expression!r}")

    def update(self, before: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        names = body.get("ExpressionAttributeNames", {})
        values = body.get("ExpressionAttributeValues", {})
        parts = re.split(r"\b(SET|REMOVE|ADD|DELETE) ", body["UpdateExpression"])
        assert parts[0] == "", body["UpdateExpression"]
        new = copy.deepcopy(before)
        tops: list[str] = []
        for keyword, text in zip(parts[1::2], parts[2::2], strict=True):
            for clause in split_top(text):
                if keyword == "SET":
                    left, right = clause.split(" = ", 1)
                    path = parse_path(left, names)
                    append = re.fullmatch(r"list_append\((.+), (:\w+)\)", right)
                    if append:
                        current = get_path(before, parse_path(append.group(1), names))["L"]
                        value = {"L": current + values[append.group(2)]["L"]}
                    else:
                        value = values[right]
                    holder = parent_of(new, path)
                    if isinstance(path[-1], int) and path[-1] >= len(holder):
                        holder.append(copy.deepcopy(value))
                    else:
                        holder[path[-1]] = copy.deepcopy(value)
                elif keyword == "REMOVE":
                    path = parse_path(clause, names)
                    holder = parent_of(new, path)
                    if isinstance(path[-1], int):
                        if path[-1] < len(holder):
                            holder.pop(path[-1])
                    else:
                        holder.pop(path[-1], None)
                else:
                    target, placeholder = clause.rsplit(" ", 1)
                    path = parse_path(target, names)
                    assert len(path) == 1, "ADD / DELETE work on top-level attributes"
                    ((tag, given),) = values[placeholder].items()
                    current = new.get(path[0])
                    if tag == "N":
                        total = Decimal(current["N"]) if current else Decimal(0)
                        new[path[0]] = {"N": str(total + Decimal(given))}
                    elif keyword == "ADD":
                        have = list(current[tag]) if current else []
                        marks = {element(tag, e) for e in have}
                        have += [e for e in given if element(tag, e) not in marks]
                        new[path[0]] = {tag: have}
                    else:
                        gone = {element(tag, e) for e in given}
                        kept = [e for e in (current or {}).get(tag, []) if element(tag, e) not in gone]
                        if kept:
                            new[path[0]] = {tag: kept}
                        else:
                            new.pop(path[0], None)
                tops.append(path[0])
        assert len(tops) == len(set(tops)), f"two clauses on one attribute: {body}"
        return new

    def write(self, kind: str, body: dict[str, Any]) -> None:
        key = self.key(body.get("Item") or body["Key"])
        if kind == "Put":
            self.items[key] = copy.deepcopy(body["Item"])
        elif kind == "Delete":
            self.items.pop(key, None)
        elif kind == "Update":
            self.items[key] = self.update(self.items.get(key) or copy.deepcopy(body["Key"]), body)

    def apply(self, op: Operation) -> None:
        request = op.request
        single = {"put_item": "Put", "delete_item": "Delete", "update_item": "Update"}
        if op.method in single:
            key = self.key(request.get("Item") or request["Key"])
            if self.holds(request, key):
                self.write(single[op.method], request)
            else:
                self.failed += 1
        elif op.method == "batch_write_item":
            ((table, requests),) = request["RequestItems"].items()
            assert table == self.spec.name and 1 <= len(requests) <= 25
            bodies = [r.get("PutRequest") or r["DeleteRequest"] for r in requests]
            keys = [self.key(body.get("Item") or body["Key"]) for body in bodies]
            assert len(set(keys)) == len(keys), "BatchWriteItem keys must be distinct"
            for r in requests:
                if "PutRequest" in r:
                    self.write("Put", r["PutRequest"])
                else:
                    self.write("Delete", r["DeleteRequest"])
        elif op.method == "transact_write_items":
            entries = [next(iter(e.items())) for e in request["TransactItems"]]
            keys = [self.key(body.get("Item") or body["Key"]) for _, body in entries]
            assert 1 <= len(entries) <= 10 and len(set(keys)) == len(keys)
            if not all(self.holds(body, key) for (_, body), key in zip(entries, keys, strict=True)):
                self.failed += 1
                return
            for kind, body in entries:
                self.write(kind, body)
        else:
            raise AssertionError(op.method)


def model_of(spec: TableSpec, ops: list[Operation]) -> Model:
    model = Model(spec)
    for op in ops:
        model.apply(op)
    return model


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        yield boto3


def create(boto3: Any, spec: TableSpec) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(**spec.create_table_request())
    return client


def scan(client: Any, spec: TableSpec) -> dict[Any, dict[str, Any]]:
    items: dict[Any, dict[str, Any]] = {}
    request: dict[str, Any] = {"TableName": spec.name}
    while True:
        page = client.scan(**request)
        for item in page["Items"]:
            items[key_tuple(spec, item)] = item
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stream_records(boto3: Any, client: Any, spec: TableSpec) -> list[dict[str, Any]]:
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = client.describe_table(TableName=spec.name)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records += page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def check_run(boto3: Any, spec: TableSpec, workload: WorkloadSpec) -> tuple[Any, list[Operation]]:
    """Run against moto; the table must equal the model and the planner's expected state."""
    client = create(boto3, spec)
    calls: list[tuple[int, int]] = []
    result = run_workload(client, spec, workload, progress=lambda d, t: calls.append((d, t)))
    assert result.errors == [] and result.ok
    ops = plan_operations(spec, workload)
    model = model_of(spec, ops)
    actual = norm_table(scan(client, spec))
    assert actual == norm_table(model.items)
    assert actual == norm_table(expected_state(spec, workload))
    assert result.failed_conditional == model.failed == sum(o.op == "conditional_fail" for o in ops)
    assert result.counts == dict(Counter(o.op for o in ops))
    assert calls[-1] == (workload.operations, workload.operations) and len(calls) == len(ops)
    written = {key for op in ops for key in op.writes}
    assert set(result.last_write) == written
    assert len(result.writes) == sum(len(op.writes) for op in ops)
    times = [t for t, _ in result.writes]
    assert times == sorted(times)
    assert all(result.started_at <= t <= result.finished_at for t in times[:1] + times[-1:])
    for key, last in result.last_write.items():
        assert last == max(t for t, k in result.writes if key_tuple(spec, k) == key)
    return result, ops


# -- plans: determinism and distributions ------------------------------------------------------
SPEC = TableSpec("wl", ("id", "S"))
COMPOSITE = TableSpec("wl-composite", ("pk", "S"), ("sk", "N"))
BINARY = TableSpec("wl-binary", ("pk", "B"), ("sk", "S"))


def digest(ops: list[Operation]) -> str:
    text = repr([(o.op, o.method, o.request, o.writer) for o in ops])
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.slow
def test_same_seed_same_plan_and_other_seed_another() -> None:
    workload = WorkloadSpec(operations=300, keys=40, mix=ALL_OPS, value_profile="type_zoo", seed=11)
    first = plan_operations(COMPOSITE, workload)
    assert first == plan_operations(COMPOSITE, workload)
    assert [o.index for o in first] == list(range(300))
    other = plan_operations(COMPOSITE, WorkloadSpec(**{**workload.to_dict(), "seed": 12}))
    assert digest(other) != digest(first)


@pytest.mark.slow
def test_plan_does_not_depend_on_the_process() -> None:
    workload = WorkloadSpec(operations=150, keys=30, mix=ALL_OPS, value_profile="type_zoo", seed=5)
    code = (
        "import hashlib\n"
        "from harness.backends.base import TableSpec\n"
        "from harness.workload import OPERATIONS, WorkloadSpec, plan_operations\n"
        "ALL_OPS = {name: 1 for name in OPERATIONS}\n"
        "def digest(ops):\n"
        "    text = repr([(o.op, o.method, o.request, o.writer) for o in ops])\n"
        "    return hashlib.sha256(text.encode()).hexdigest()\n"
        "spec = TableSpec('wl-binary', ('pk', 'B'), ('sk', 'S'))\n"
        "w = WorkloadSpec(operations=150, keys=30, mix=ALL_OPS, value_profile='type_zoo', seed=5)\n"
        "print(digest(plan_operations(spec, w)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(plan_operations(BINARY, workload))


def test_every_kind_is_planned_and_kinds_do_what_they_say() -> None:
    workload = WorkloadSpec(operations=400, keys=30, mix=ALL_OPS, seed=3)
    ops = plan_operations(SPEC, workload)
    assert set(Counter(o.op for o in ops)) == set(OPERATIONS)
    model = Model(SPEC)
    fewer = overwrites = 0
    for op in ops:
        before = dict(model.items)
        if op.op == "put_new":
            assert model.key(op.request["Item"]) not in before
        if op.op == "put_overwrite":
            key = model.key(op.request["Item"])
            overwrites += 1
            fewer += len(op.request["Item"]) < len(before[key])
        if op.op in ("delete", "update_remove", "update_delete_set"):
            assert all(k in before for k in op.keys)
        if op.op == "update_remove":
            assert op.request["UpdateExpression"].startswith("REMOVE ")
        if op.op == "conditional_fail":
            assert op.expect_condition_failure and op.writes == ()
        if op.op == "batch_write":
            assert 1 <= len(op.keys) <= 25 and len(set(op.keys)) == len(op.keys)
        if op.op == "transaction":
            assert 1 <= len(op.keys) <= 10 and len(set(op.keys)) == len(op.keys)
        model.apply(op)
        changed = {k for k in set(before) | set(model.items) if before.get(k) != model.items.get(k)}
        assert changed == set(op.writes), f"every write changes its item: {op}"
    assert fewer > overwrites / 2, "put_overwrite usually writes fewer attributes"
    nested = [o for o in ops if o.op == "update_remove" and "." in o.request["UpdateExpression"]]
    assert nested, "update_remove removes nested map paths"
    variants = {(o.method, o.request.get("ConditionExpression", "")[:14]) for o in ops
                if o.op == "conditional_fail"}
    assert len(variants) >= 4


@pytest.mark.slow
def test_zipf_concentrates_uniform_spreads_sequential_in_order() -> None:
    def key_counts(distribution: str) -> Counter[Any]:
        workload = WorkloadSpec(operations=2000, keys=200, mix={"update_set": 1}, seed=2,
                                key_distribution=distribution, zipf_s=1.3)
        return Counter(o.keys[0] for o in plan_operations(SPEC, workload))

    zipf, uniform = key_counts("zipf"), key_counts("uniform")
    top10 = lambda counts: sum(n for _, n in counts.most_common(10))  # noqa: E731
    assert top10(zipf) > 0.5 * 2000
    assert top10(uniform) < 0.15 * 2000
    assert zipf.most_common(1)[0][1] > 5 * uniform.most_common(1)[0][1]

    workload = WorkloadSpec(operations=25, keys=10, mix={"update_set": 1},
                            key_distribution="sequential")
    ops = plan_operations(SPEC, workload)
    assert [o.keys[0] for o in ops] == [(f"k{i % 10:06d}",) for i in range(25)]


def test_writers_own_their_keys() -> None:
    workload = WorkloadSpec(operations=400, keys=50, mix=ALL_OPS, writers=3, seed=9)
    ops = plan_operations(COMPOSITE, workload)
    owner: dict[Any, int] = {}
    for op in ops:
        for key in op.keys:
            assert owner.setdefault(key, op.writer) == op.writer
    assert set(owner.values()) == {0, 1, 2}
    # without multi-key operations, the plan is one writer's plan apart from the lane
    singles = {**ALL_OPS, "batch_write": 0, "transaction": 0, "conditional_fail": 0}
    three = WorkloadSpec(operations=200, keys=50, mix=singles, writers=3, seed=9)
    one = WorkloadSpec(operations=200, keys=50, mix=singles, writers=1, seed=9)
    strip = lambda o: (o.op, o.method, o.request, o.keys, o.writes)  # noqa: E731
    assert [strip(o) for o in plan_operations(COMPOSITE, three)] == [
        strip(o) for o in plan_operations(COMPOSITE, one)
    ]


def test_composite_keys_split_into_partitions() -> None:
    workload = WorkloadSpec(operations=200, keys=60, mix={"put_new": 1}, seed=1)
    keys = {k for o in plan_operations(COMPOSITE, workload) for k in o.keys}
    assert len(keys) == 60
    partitions = Counter(pk for pk, _ in keys)
    assert 5 <= len(partitions) <= 12 and all(isinstance(sk, str) for _, sk in keys)


# -- values ------------------------------------------------------------------------------------
def all_values(ops: list[Operation]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(name: str, value: dict[str, Any]) -> None:
        out.append((name, value))
        ((tag, data),) = value.items()
        if tag == "M":
            for k, v in data.items():
                walk(k, v)
        elif tag == "L":
            for v in data:
                walk(name, v)

    for op in ops:
        for item in _items(op.request):
            for name, value in item.items():
                walk(name, value)
    return out


def _items(request: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(request, dict):
        if "Item" in request:
            found.append(request["Item"])
        for value in request.values():
            if isinstance(value, (dict, list)):
                found += _items(value)  # type: ignore[arg-type]
    elif isinstance(request, list):
        for value in request:
            found += _items(value)
    return found


@pytest.mark.slow
def test_type_zoo_has_every_type_and_edge() -> None:
    workload = WorkloadSpec(operations=300, keys=20, mix=ALL_OPS, value_profile="type_zoo", seed=4)
    ops = plan_operations(BINARY, workload)
    values = all_values(ops)
    tags = {next(iter(v)) for _, v in values}
    assert tags == {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
    assert {"S": ""} in [v for _, v in values] and {"B": b""} in [v for _, v in values]
    assert {"M": {}} in [v for _, v in values] and {"L": []} in [v for _, v in values]
    numbers = {v["N"] for _, v in values if "N" in v} | {n for _, v in values for n in v.get("NS", [])}
    assert set(EDGE_NUMBERS) <= numbers
    names = {name for name, _ in values}
    assert any("." in n for n in names) and any(n.startswith("$") for n in names)
    assert any(not s.isascii() for _, v in values if "S" in v for s in [v["S"]])
    items = [item for op in ops for item in _items(op.request)]
    assert max(nesting_depth(v) for item in items for v in item.values()) >= 30
    for item in [*items, *expected_state(BINARY, workload).values()]:
        check_item(item)
    for op in ops:
        assert all(v != b"" for k in op.keys for v in k), "no empty binary in keys"


def test_edge_numbers_and_dynamodb_rules() -> None:
    for number in EDGE_NUMBERS:
        check_number(number)
    for bad in ("1" * 39, "1E+126", "1E-131", "NaN", "Infinity", "", "1,5", "0x10"):
        with pytest.raises(ValueError):
            check_number(bad)
    check_number("1" * 38 + "0" * 50)  # trailing zeros are not significant
    for bad_item in (
        {"s": {"SS": []}},
        {"n": {"NS": ["5", "5.00"]}},
        {"n": {"N": "1E+126"}},
        {"big": {"S": "x" * (MAX_ITEM_BYTES + 1)}},
        {"deep": _nested(32)},
    ):
        with pytest.raises(ValueError):
            check_item(bad_item)
    check_item({"deep": _nested(31), "e": {"S": ""}, "b": {"B": b""}, "l": {"L": [{"M": {}}]}})
    assert item_size({"ab": {"S": "héllo"}}) == 2 + 6


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "x"}
    for _ in range(depth):
        value = {"M": {"a": value}}
    return value


def test_large_item_plans_stay_under_the_limits() -> None:
    workload = WorkloadSpec(operations=60, keys=6, item_size_bytes=400_000, seed=7,
                            mix={"put_new": 2, "put_overwrite": 2, "update_set": 3,
                                 "update_add_set": 1, "transaction": 2, "batch_write": 1})
    ops = plan_operations(BINARY, workload)
    sizes = [item_size(item) for op in ops for item in _items(op.request)]
    assert max(sizes) <= MAX_ITEM_BYTES and min(sizes) > 390_000
    for state in expected_state(BINARY, workload).values():
        assert item_size(state) <= MAX_ITEM_BYTES
    for op in ops:
        if op.method == "transact_write_items":
            assert sum(item_size(i) for i in _items(op.request)) <= TRANSACTION_BYTES


# -- the spec ----------------------------------------------------------------------------------
def test_from_dict_reads_every_shipped_scenario() -> None:
    tomllib = pytest.importorskip("tomllib")
    files = sorted((ROOT / "scenarios").glob("*.toml"))
    assert files
    for path in files:
        data = tomllib.loads(path.read_text())
        if "migration" in data:  # a migration scenario writes its own table (harness.migration)
            assert "workload" not in data
            continue
        spec = WorkloadSpec.from_dict(data["workload"])
        assert spec.operations == data["workload"]["operations"]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"operations": 10, "colour": "red"}, "workload.colour"),
        ({"mix": {"put_new": 1, "upsert": 1}}, "workload.mix.upsert"),
        ({"mix": {"put_new": -1}}, "workload.mix.put_new"),
        ({"mix": {"put_new": 0}}, "workload.mix"),
        ({"key_distribution": "pareto"}, "workload.key_distribution"),
        ({"value_profile": "zoo"}, "workload.value_profile"),
        ({"operations": "10"}, "workload.operations"),
        ({"operations": True}, "workload.operations"),
        ({"keys": 0}, "workload.keys"),
        ({"zipf_s": 0}, "workload.zipf_s"),
        ({"item_size_bytes": 500_000}, "workload.item_size_bytes"),
        ({"rate_per_s": -1}, "workload.rate_per_s"),
        ({"writers": 0}, "workload.writers"),
        ({"seed": 1.5}, "workload.seed"),
    ],
)
def test_from_dict_names_the_bad_key(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        WorkloadSpec.from_dict(data)


def test_from_dict_round_trip() -> None:
    spec = WorkloadSpec.from_dict({"operations": 5, "mix": {"delete": 1.5}, "rate_per_s": 10})
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec


# -- against moto ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "profile", "writers", "mix", "operations"),
    [
        (TableSpec("wl-s", ("id", "S")), "simple", 1, {**ALL_OPS, "transaction": 0.5}, 120),
        (COMPOSITE, "simple", 3, {**ALL_OPS, "transaction": 0.5}, 120),
        (TableSpec("wl-n", ("id", "N")), "type_zoo", 1, {**ALL_OPS, "transaction": 0.3}, 80),
        (BINARY, "type_zoo", 2, {**ALL_OPS, "transaction": 0.3}, 80),
    ],
    ids=["string-key", "composite-3-writers", "zoo-number-key", "zoo-binary-composite"],
)
def test_run_against_moto_matches_the_model(
    aws: Any, spec: TableSpec, profile: str, writers: int, mix: dict[str, float], operations: int
) -> None:
    workload = WorkloadSpec(operations=operations, keys=20, mix=mix, value_profile=profile,
                            writers=writers, seed=21)
    result, _ = check_run(aws, spec, workload)
    assert set(result.counts) == set(OPERATIONS)
    assert result.summary()["done"] == operations


def test_large_items_near_the_limit(aws: Any) -> None:
    spec = TableSpec("wl-large", ("id", "B"))
    workload = WorkloadSpec(operations=16, keys=4, item_size_bytes=390_000, seed=7,
                            mix={"put_new": 2, "put_overwrite": 2, "update_set": 1,
                                 "update_remove": 1, "batch_write": 1, "transaction": 1,
                                 "delete": 1})
    check_run(aws, spec, workload)
    client = aws.client("dynamodb", region_name="us-east-1")
    sizes = [item_size(item) for item in scan(client, spec).values()]
    assert sizes and max(sizes) > 385_000 and max(sizes) <= MAX_ITEM_BYTES


@pytest.mark.slow
def test_conditional_fail_writes_nothing(aws: Any) -> None:
    spec = TableSpec("wl-cond", ("pk", "S"), ("sk", "N"))
    workload = WorkloadSpec(operations=60, keys=12, mix={"put_new": 1, "conditional_fail": 2},
                            seed=13)
    result, ops = check_run(aws, spec, workload)
    failing = [o for o in ops if o.op == "conditional_fail"]
    assert failing and result.failed_conditional == len(failing)
    assert {o.method for o in failing} >= {"put_item", "update_item", "delete_item"}
    client = aws.client("dynamodb", region_name="us-east-1")
    records = stream_records(aws, client, spec)
    # each put changes its item: one record each; a failed condition: none
    assert len(records) == len(ops) - len(failing)


def test_only_failing_conditions_leave_the_table_empty(aws: Any) -> None:
    workload = WorkloadSpec(operations=10, keys=5, mix={"conditional_fail": 1})
    result, _ = check_run(aws, SPEC, workload)
    assert result.failed_conditional == 10 and not result.writes
    assert scan(aws.client("dynamodb", region_name="us-east-1"), SPEC) == {}


# -- retries and pacing, with a fake client -----------------------------------------------------
class FakeClient:
    """Accepts every call; ``failures`` is a list of error codes to raise first (in order)."""

    def __init__(self, failures: list[tuple[str, int]] | None = None, unprocessed: int = 0):
        self.failures = list(failures or [])
        self.unprocessed = unprocessed
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _call(self, method: str, request: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls.append((method, request))
        if self.failures:
            code, status = self.failures.pop(0)
            raise ClientError(
                {"Error": {"Code": code, "Message": code},
                 "ResponseMetadata": {"HTTPStatusCode": status}},
                method,
            )
        if method == "batch_write_item" and self.unprocessed:
            self.unprocessed -= 1
            ((table, requests),) = request["RequestItems"].items()
            return {"UnprocessedItems": {table: requests[1:]}} if len(requests) > 1 else {}
        return {}

    def __getattr__(self, method: str) -> Any:
        return lambda **request: self._call(method, request)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.workload.writer as workload

    monkeypatch.setattr(workload, "BACKOFF_BASE_S", 0.0)


def test_throttling_is_retried(no_backoff: None) -> None:
    client = FakeClient([("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400)])
    workload = WorkloadSpec(operations=3, keys=3, mix={"put_new": 1})
    result = run_workload(client, SPEC, workload)
    assert result.ok and result.retries == 2 and len(client.calls) == 5
    assert len(result.last_write) == 3


def test_ambiguous_errors_are_retried_only_when_idempotent(no_backoff: None) -> None:
    client = FakeClient([("InternalServerError", 500)])
    result = run_workload(client, SPEC, WorkloadSpec(operations=1, mix={"update_add_number": 1}))
    assert not result.ok and result.retries == 0 and "InternalServerError" in result.errors[0]
    assert result.last_write == {} and result.counts == {}

    client = FakeClient([("InternalServerError", 500)])
    result = run_workload(client, SPEC, WorkloadSpec(operations=1, mix={"put_new": 1}))
    assert result.ok and result.retries == 1

    client = FakeClient([("ValidationException", 400)])
    result = run_workload(client, SPEC, WorkloadSpec(operations=2, mix={"put_new": 1}))
    assert result.error_count == 1 and result.counts == {"put_new": 1}


def test_unprocessed_batch_items_are_resent(no_backoff: None) -> None:
    client = FakeClient(unprocessed=2)
    workload = WorkloadSpec(operations=1, keys=50, mix={"batch_write": 1}, seed=3)
    result = run_workload(client, SPEC, workload)
    (op,) = plan_operations(SPEC, workload)
    assert result.ok and [m for m, _ in client.calls] == ["batch_write_item"] * 3
    assert set(result.last_write) == set(op.writes) and len(result.writes) == len(op.writes)


def test_transactions_carry_a_fresh_token_and_conditions_count() -> None:
    client = FakeClient()
    workload = WorkloadSpec(operations=4, keys=20, mix={"transaction": 1}, seed=1)
    run_workload(client, SPEC, workload)
    tokens = [r["ClientRequestToken"] for m, r in client.calls if m == "transact_write_items"]
    assert len(tokens) == 4 and len(set(tokens)) == 4
    assert all("ClientRequestToken" not in o.request for o in plan_operations(SPEC, workload))

    # a condition that does not fail when it should is an error, not a write
    result = run_workload(FakeClient(), SPEC, WorkloadSpec(operations=3, mix={"conditional_fail": 1}))
    assert result.error_count == 3 and result.failed_conditional == 0 and not result.writes


def test_rate_limit_and_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.workload.writer as workload_module

    class FrozenTime:
        """The clock never moves and sleeping returns at once: the limiter's schedule is what
        it asks to sleep, independent of the machine's speed and of the writers' interleaving."""

        def __init__(self) -> None:
            self.sleeps: list[float] = []

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def monotonic(self) -> float:
            return 0.0

        def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)

    frozen = FrozenTime()
    monkeypatch.setattr(workload_module, "time", frozen)
    seen: list[tuple[int, int]] = []
    result = run_workload(FakeClient(), SPEC, WorkloadSpec(operations=20, rate_per_s=200, writers=2),
                          progress=lambda done, total: seen.append((done, total)))
    # One slot every 1/200 s: the first operation goes at once, the k-th waits k/200 s.
    assert sorted(frozen.sleeps) == pytest.approx([k / 200 for k in range(1, 20)])
    assert seen == [(n, 20) for n in range(1, 21)] and result.done == 20

    def broken(done: int, total: int) -> None:
        raise RuntimeError("bar")

    result = run_workload(FakeClient(), SPEC, WorkloadSpec(operations=5), progress=broken)
    assert result.done == 5 and result.error_count == 1
